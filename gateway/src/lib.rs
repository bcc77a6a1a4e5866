//! Omnigate: a customer identity gateway. This crate is the `omnigate` binary's
//! library: configuration, the Pingora edge proxy, the admin listener and the
//! demo upstreams. See ARCHITECTURE.md for how a request flows.
#![forbid(unsafe_code)]

pub mod accesslog;
pub mod accounts;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod config;
pub mod consent;
pub mod customers;
pub mod demo;
pub mod edge;
pub mod events;
pub mod gate;
pub mod health;
pub mod httpd;
pub mod identity;
pub mod login;
pub mod metrics;
pub mod pages;
pub mod portal;
pub mod privacy;
pub mod problem;
pub mod server;
pub mod session;
pub mod shard;
pub mod state;
pub mod store;
pub mod throttle;
pub mod waiting_room;
pub mod webhook;
