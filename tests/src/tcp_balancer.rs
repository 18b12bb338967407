//! A small L4 load balancer for tests of edge replicas behind one address:
//! listens on 127.0.0.1:0 and relays each connection, unmodified, to the
//! next backend in turn (round robin); a backend that refuses the
//! connection (a replica that died) is skipped, as a load balancer's
//! health check would. Counts the connections each backend got. Stops
//! when dropped.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use tokio::{net::TcpListener, task::JoinHandle};

#[derive(Default)]
struct Backends {
    addresses: Vec<SocketAddr>,
    relayed: Vec<u64>,
    next: usize,
}

/// A running balancer.
pub struct TcpBalancer {
    address: SocketAddr,
    backends: Arc<Mutex<Backends>>,
    task: JoinHandle<()>,
}

impl TcpBalancer {
    /// Listens on 127.0.0.1:0, with no backend yet (connections are
    /// closed until [`TcpBalancer::set_backends`]).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let backends = Arc::new(Mutex::new(Backends::default()));
        let shared = backends.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = shared.clone();
                tokio::spawn(async move {
                    let tries = backends.lock().expect("backends").addresses.len();
                    for _ in 0..tries {
                        let (index, target) = {
                            let mut b = backends.lock().expect("backends");
                            let index = b.next % b.addresses.len();
                            b.next = b.next.wrapping_add(1);
                            (index, b.addresses[index])
                        };
                        if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                            backends.lock().expect("backends").relayed[index] += 1;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Self {
            address,
            backends,
            task,
        }
    }

    /// The one address clients (and the CA) connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Relays to these backends from now on.
    pub fn set_backends(&self, addresses: &[SocketAddr]) {
        let mut b = self.backends.lock().expect("backends");
        b.relayed = vec![0; addresses.len()];
        b.addresses = addresses.to_vec();
    }

    /// How many connections each backend got (in the order given).
    pub fn relayed(&self) -> Vec<u64> {
        self.backends.lock().expect("backends").relayed.clone()
    }
}

impl Drop for TcpBalancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
