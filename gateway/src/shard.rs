//! Worker shards. With `server.work_stealing: false` (the default) every worker
//! thread is a shard: one single-threaded runtime that accepts on every
//! customer listener and serves each connection it accepted from the first
//! byte to the last, with its own upstream connection pool.
//!
//! Why not Pingora's own listener service: it accepts on one thread and hands
//! each connection to a randomly chosen runtime, while the socket stays
//! registered with the accepting thread's reactor; its upstream pool is shared
//! by all threads and parks each idle connection in a task on a random thread.
//! Every read then crosses threads through an eventfd write and a wake-up
//! (measured: 7.4 system calls and 0.9 context switches per proxied request on
//! 2 threads against 5.0 and 0.01 on one). A shard does all of a connection's
//! work where its socket lives, as nginx's worker processes do.
//!
//! The listening sockets are bound once, at start, by [`bind`]; each shard
//! accepts on its own duplicate of the descriptor, so whichever shard is free
//! takes the next connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::GetSocketDigest;
use pingora_core::protocols::SocketDigest;
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::Service;
use pingora_proxy::HttpProxy;

use crate::edge::Gateway;

/// Pending connections the kernel queues per listening socket (as Pingora).
const BACKLOG: u32 = 65_535;
/// A TLS handshake that takes longer is dropped (as Pingora's listener).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds a customer listener's socket. Called once per listener at start,
/// inside a Tokio runtime; the shards accept on duplicates of it.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// One customer listener as a shard serves it.
pub struct ShardListener {
    pub name: String,
    /// Counts this shard's accepted connections on this listener.
    pub accepted: prometheus::IntCounter,
    /// Counts failed TLS handshakes on this listener.
    pub handshake_failures: prometheus::IntCounter,
    /// This shard's duplicate of the bound socket.
    pub socket: std::net::TcpListener,
    pub tls: Option<Arc<Acceptor>>,
    /// The proxy for this listener; its upstream pool belongs to this shard.
    pub proxy: Arc<HttpProxy<Gateway>>,
}

/// A Pingora service that runs on exactly one thread.
pub struct Shard {
    pub name: String,
    pub listeners: Vec<ShardListener>,
}

#[async_trait]
impl Service for Shard {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        // Spawned here, these tasks stay on this shard's only thread.
        let loops: Vec<_> = self
            .listeners
            .drain(..)
            .map(|l| tokio::spawn(accept_loop(l, shutdown.clone())))
            .collect();
        for l in loops {
            let _ = l.await;
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}

async fn accept_loop(l: ShardListener, mut shutdown: ShutdownWatch) {
    let listener = match l
        .socket
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(l.socket))
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(listener = %l.name, error = %e, "cannot accept on listener");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                l.accepted.inc();
                let tls = l
                    .tls
                    .clone()
                    .map(|acceptor| (acceptor, l.handshake_failures.clone()));
                tokio::spawn(serve(tcp, peer, tls, l.proxy.clone(), shutdown.clone()));
            }
            Err(e) => {
                tracing::warn!(listener = %l.name, error = %e, "accept failed");
                // Out of descriptors: accept would fail at once again; give
                // open connections a moment to finish.
                let pause = if matches!(e.raw_os_error(), Some(23 | 24)) {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(10)
                };
                tokio::time::sleep(pause).await;
            }
        }
    }
    l.proxy.cleanup().await;
}

async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<(Arc<Acceptor>, prometheus::IntCounter)>,
    proxy: Arc<HttpProxy<Gateway>>,
    shutdown: ShutdownWatch,
) {
    let _ = tcp.set_nodelay(true);
    let mut l4 = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(std::os::fd::AsRawFd::as_raw_fd(&l4));
    let _ = digest.peer_addr.set(Some(peer.into()));
    l4.set_socket_digest(digest);
    let stream: pingora_core::protocols::Stream = match tls {
        None => Box::new(l4),
        Some((acceptor, failures)) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.tls_handshake(l4)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    failures.inc();
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    failures.inc();
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let mut next = Some(stream);
    while let Some(stream) = next.take() {
        next = proxy.process_new(stream, &shutdown).await;
    }
}
