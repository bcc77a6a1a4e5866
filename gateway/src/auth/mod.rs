//! Authentication of requests: bearer tokens from configured issuers (this
//! module), sessions and login (later). Decision logic is pure; key fetching
//! lives in `jwks`.

pub mod jwks;
pub mod token;
