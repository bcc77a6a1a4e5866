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
//! The listening sockets are bound at start by [`bind`]: one per shard on the
//! same address (`SO_REUSEPORT`), so the kernel spreads connections evenly.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::l4::stream::{
    DEFAULT_L4_READ_BUFFER_SIZE, DEFAULT_L4_WRITE_BUFFER_SIZE,
};
use pingora_core::protocols::SocketDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, TimingDigest, UniqueID,
    UniqueIDType,
};
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::Service;
use pingora_proxy::HttpProxy;

use crate::edge::Gateway;

/// Pending connections the kernel queues per listening socket (as Pingora).
const BACKLOG: u32 = 65_535;
/// A TLS handshake that takes longer is dropped (as Pingora's listener).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds one listening socket per worker for a customer listener, all on the
/// same address with `SO_REUSEPORT`, so the kernel spreads new connections
/// evenly over the workers. (Sharing one socket let whichever worker woke
/// first take bursts: 53 of 64 benchmark connections on one worker.)
/// Called at start, inside a Tokio runtime.
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    // A plain bind first: with SO_REUSEPORT alone, a second gateway of the
    // same user could silently share the port instead of failing.
    drop(std::net::TcpListener::bind(addr)?);
    let mut sockets = Vec::with_capacity(workers);
    let mut at = addr;
    for _ in 0..workers.max(1) {
        let socket = if at.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(at)?;
        let listener = socket.listen(BACKLOG)?.into_std()?;
        // Port 0: the others join the port the first one got.
        at = listener.local_addr()?;
        sockets.push(listener);
    }
    Ok(sockets)
}

/// One customer listener as a shard serves it.
pub struct ShardListener {
    pub name: String,
    /// Counts this shard's accepted connections on this listener.
    pub accepted: prometheus::IntCounter,
    /// Counts failed TLS handshakes on this listener.
    pub handshake_failures: prometheus::IntCounter,
    /// This shard's own listening socket.
    pub socket: std::net::TcpListener,
    pub tls: Option<Arc<Acceptor>>,
    /// The proxy for this listener; its upstream pool belongs to this shard.
    pub proxy: Arc<HttpProxy<Gateway>>,
    /// The process state; readiness counts the running accept loops.
    pub app: Arc<crate::state::App>,
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
    l.app.accept_loops.fetch_add(1, Ordering::Relaxed);
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
    l.app.accept_loops.fetch_sub(1, Ordering::Relaxed);
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
    let l4 = Buffered(tokio::io::BufStream::with_capacity(
        DEFAULT_L4_READ_BUFFER_SIZE,
        DEFAULT_L4_WRITE_BUFFER_SIZE,
        l4,
    ));
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

/// A client connection with the buffers Pingora's own listener gives it
/// (`Stream::from` leaves a stream unbuffered and Pingora's setter is private
/// to it): a response header and a small body leave in one `send`, not two,
/// and TLS records are read in few system calls. Like Pingora's stream, it
/// relies on the HTTP layer to flush, which it does at the end of every
/// response and after headers that have no length.
#[derive(Debug)]
struct Buffered(tokio::io::BufStream<L4Stream>);

impl Buffered {
    fn l4(&self) -> &L4Stream {
        self.0.get_ref()
    }
}

impl tokio::io::AsyncRead for Buffered {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Buffered {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Buffered {
    async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.0.flush().await;
        Shutdown::shutdown(self.0.get_mut()).await;
    }
}

impl UniqueID for Buffered {
    fn id(&self) -> UniqueIDType {
        self.l4().id()
    }
}

impl Ssl for Buffered {}

#[async_trait]
impl Peek for Buffered {
    /// Peeks through the read buffer: the bytes stay there for the next read.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let buffered = tokio::io::AsyncBufReadExt::fill_buf(&mut self.0).await?;
        let n = buffered.len().min(buf.len());
        buf[..n].copy_from_slice(&buffered[..n]);
        Ok(true)
    }
}

impl GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.l4().get_timing_digest()
    }
}

impl GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
        self.l4().get_proxy_digest()
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.l4().get_socket_digest()
    }
}
