//! End-to-end tests of the real `omnigate` binary: real sockets, real TLS,
//! real upstream servers. All linked into one test binary.

mod support;

mod accounts;
mod admin;
mod bearer;
mod check;
mod consent;
mod deploy;
mod domains;
mod errors;
mod events;
mod faults;
mod forward_auth;
mod health;
mod keys;
mod login;
mod pages;
mod portal;
mod privacy;
mod providers;
mod proxy;
mod reload;
mod spikes;
mod tls;
mod trust;
mod walk;
mod workers;
