//! Verified identity for backends. Owns the identity header namespace: which
//! headers carry identity to an upstream, under which names, and the rule that
//! a client can never supply one. Never forwards a client-sent identity header.

pub mod assertion;
pub mod headers;
pub mod keys;
pub mod rotation;
