//! [`ConnTable`]: every open client connection of the edge (all
//! listeners), with the caps in total and per client address (IPv4, or
//! the /64 of IPv6). At a cap the connection idle the longest (no request
//! in flight; silent ones first, see [`ConnState`]) is closed to make
//! room, found in O(1) amortised ([`super::idle`]); with none idle, the
//! newcomer is refused. Before that, at accept, an address over its rate
//! of new connections ([`super::admission`]) or with too many handshakes
//! in progress is refused, before any TLS work. Behind a trusted PROXY
//! protocol source the per-address rules apply once the header named the
//! client ([`ConnGuard::rekey`]).

use crate::conn::{
    CloseReason, ConnState, ConnStats, Limits, Refusal, address_key, admission::AcceptRate,
    idle::IdleQueues,
};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::time::Instant;

/// One client address (key) in the table.
#[derive(Debug, Default)]
struct Address {
    /// Its connections open.
    conns: usize,
    /// Of which in set-up (PROXY header, TLS handshake).
    setup: usize,
    /// Its idle connections, in eviction order (with a per-address cap).
    idle: IdleQueues,
}

/// Open connections by id. Hashed with foldhash: the ids are the edge's
/// own sequence numbers (no client chooses them), and every stream that
/// leaves its connection idle looks its connection up here, plus one
/// lookup per entry when an idle queue is compacted (SipHash made that
/// some 600 instructions per call at one stream, issue 17).
type Conns = HashMap<u64, (IpAddr, Arc<ConnState>), foldhash::fast::RandomState>;

#[derive(Debug)]
struct Inner {
    conns: Conns,
    addresses: HashMap<IpAddr, Address>,
    idle: IdleQueues,
    rate: AcceptRate,
}

/// Whether the idle-queue entry `(id, generation)` (of address `key`, or
/// any) still describes an open, idle connection.
fn valid(conns: &Conns, key: Option<IpAddr>) -> impl Fn(u64, u64) -> bool {
    move |id, generation| {
        conns.get(&id).is_some_and(|(k, s)| {
            key.is_none_or(|key| *k == key)
                && s.is_idle()
                && s.idle_gen.load(Ordering::Acquire) == generation
        })
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct ConnTable {
    limits: Limits,
    max_total: usize,
    epoch: Instant,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    stats: Arc<ConnStats>,
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct ConnGuard {
    table: Arc<ConnTable>,
    state: Arc<ConnState>,
}

impl ConnGuard {
    /// The connection's state.
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }

    /// The table's limits.
    pub fn limits(&self) -> &Limits {
        &self.table.limits
    }

    /// The table's counters.
    pub fn stats(&self) -> &Arc<ConnStats> {
        &self.table.stats
    }

    /// Moves the connection to the client address `addr` (from a PROXY
    /// header), applying the per-address cap there. False: refused.
    pub fn rekey(&self, addr: IpAddr) -> bool {
        self.table.rekey(&self.state, address_key(addr)).is_ok()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.remove(self.state.id);
        if let Some(reason) = self.state.close_reason() {
            self.table.stats.closed(reason);
        }
    }
}

impl ConnTable {
    /// A table with `limits`; the total cap is `limits.max_total` bounded
    /// by `fd_cap` (what the file-descriptor limit leaves for connections).
    pub fn new(limits: Limits, fd_cap: usize) -> Arc<Self> {
        let max_total = limits.max_total.min(fd_cap).max(1);
        let stats = Arc::new(ConnStats::default());
        stats.set_max(max_total);
        let rate = AcceptRate::new(
            limits.accept_rate_per_address,
            limits.accept_burst_per_address,
        );
        Arc::new(Self {
            limits,
            max_total,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                conns: Conns::default(),
                addresses: HashMap::new(),
                idle: IdleQueues::default(),
                rate,
            }),
            stats,
        })
    }

    /// The total cap in force.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// The counters read by `/metrics`.
    pub fn stats(&self) -> &Arc<ConnStats> {
        &self.stats
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.lock().map(|i| i.conns.len()).unwrap_or(0)
    }

    /// Admits a connection from `peer`, closing the oldest idle one at a
    /// cap; `Err` when it must be refused: over its address's rate or
    /// handshakes, or a cap with nothing idle.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnGuard, Refusal> {
        let key = address_key(peer);
        let mut inner = self.inner.lock().map_err(|_| Refusal::TotalCap)?;
        let result = self.make_room(&mut inner, key, !self.limits.trusts(peer), true);
        if let Err(refusal) = result {
            self.stats.refused(refusal);
            return Err(refusal);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(id, self.epoch, Arc::downgrade(self)));
        inner.conns.insert(id, (key, state.clone()));
        let address = inner.addresses.entry(key).or_default();
        address.conns += 1;
        address.setup += 1;
        self.push_idle(&mut inner, &state, key);
        self.stats.set_open(inner.conns.len());
        Ok(ConnGuard {
            table: self.clone(),
            state,
        })
    }

    /// Room for one more connection of `key`; `per_address`: apply the
    /// address's rate, handshake and connection caps; `new`: the total cap.
    fn make_room(
        &self,
        inner: &mut Inner,
        key: IpAddr,
        per_address: bool,
        new: bool,
    ) -> Result<(), Refusal> {
        let limits = &self.limits;
        if per_address {
            if !inner.rate.take(key, Instant::now()) {
                return Err(Refusal::AddressRate);
            }
            let setup = inner.addresses.get(&key).map_or(0, |a| a.setup);
            if limits.max_handshakes_per_address > 0 && setup >= limits.max_handshakes_per_address {
                return Err(Refusal::AddressHandshakes);
            }
        }
        if new
            && inner.conns.len() >= self.max_total
            && !self.evict_oldest_idle(inner, None, CloseReason::EvictedTotal)
        {
            return Err(Refusal::TotalCap);
        }
        let max = limits.max_per_address;
        if per_address
            && max > 0
            && inner.addresses.get(&key).map_or(0, |a| a.conns) >= max
            && !self.evict_oldest_idle(inner, Some(key), CloseReason::EvictedAddress)
        {
            return Err(Refusal::AddressCap);
        }
        Ok(())
    }

    fn rekey(&self, state: &Arc<ConnState>, key: IpAddr) -> Result<(), Refusal> {
        let mut inner = self.inner.lock().map_err(|_| Refusal::TotalCap)?;
        let Some(old) = inner.conns.get(&state.id).map(|(k, _)| *k) else {
            return Err(Refusal::TotalCap);
        };
        if old == key {
            return Ok(());
        }
        // The address's own rules, as at accept (the total cap held there).
        if let Err(refusal) = self.make_room(&mut inner, key, true, false) {
            self.stats.refused(refusal);
            return Err(refusal);
        }
        let in_setup = !state.ready.load(Ordering::Acquire);
        forget(&mut inner.addresses, old, in_setup);
        let address = inner.addresses.entry(key).or_default();
        address.conns += 1;
        address.setup += usize::from(in_setup);
        if let Some(entry) = inner.conns.get_mut(&state.id) {
            entry.0 = key;
        }
        self.push_idle(&mut inner, state, key);
        Ok(())
    }

    /// The set-up of `state` is done (see [`ConnState::mark_ready`]).
    pub(crate) fn ready(&self, state: &ConnState) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let key = inner.conns.get(&state.id).map(|(k, _)| *k);
        if state.ready.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(key) = key {
            if let Some(address) = inner.addresses.get_mut(&key) {
                address.setup = address.setup.saturating_sub(1);
            }
            self.push_idle(&mut inner, state, key);
        }
    }

    /// `state` has no request in flight any more.
    pub(crate) fn idle_again(&self, state: &ConnState) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(key) = inner.conns.get(&state.id).map(|(k, _)| *k) {
            self.push_idle(&mut inner, state, key);
        }
    }

    /// Queues `state` (of `key`) in eviction order, now that it is idle.
    fn push_idle(&self, inner: &mut Inner, state: &ConnState, key: IpAddr) {
        let (class, _) = state.eviction_order();
        let generation = state.idle_gen.fetch_add(1, Ordering::AcqRel) + 1;
        let Inner {
            conns,
            addresses,
            idle,
            ..
        } = inner;
        idle.push(class, state.id, generation, conns.len(), valid(conns, None));
        if self.limits.max_per_address > 0
            && let Some(address) = addresses.get_mut(&key)
        {
            let live = address.conns;
            address
                .idle
                .push(class, state.id, generation, live, valid(conns, Some(key)));
        }
    }

    /// Closes up to `n` of the connections idle the longest (file
    /// descriptors ran out). Returns how many.
    pub fn shed_idle(&self, n: usize) -> usize {
        let Ok(mut inner) = self.inner.lock() else {
            return 0;
        };
        (0..n)
            .take_while(|_| self.evict_oldest_idle(&mut inner, None, CloseReason::ShedFdLimit))
            .count()
    }

    /// Closes the idle connection (of `key`, or any) idle the longest and
    /// frees its place at once (its task drops the socket right after).
    fn evict_oldest_idle(&self, inner: &mut Inner, key: Option<IpAddr>, why: CloseReason) -> bool {
        let Inner {
            conns,
            addresses,
            idle,
            ..
        } = inner;
        let oldest = match key {
            None => idle.pop_oldest(valid(conns, None)),
            Some(key) => addresses
                .get_mut(&key)
                .and_then(|a| a.idle.pop_oldest(valid(conns, Some(key)))),
        };
        let Some(id) = oldest else {
            return false;
        };
        self.forget_conn(inner, id, Some(why));
        true
    }

    fn remove(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            self.forget_conn(&mut inner, id, None);
        }
    }

    /// Takes connection `id` out of the table (asking it to close `why`).
    fn forget_conn(&self, inner: &mut Inner, id: u64, why: Option<CloseReason>) {
        if let Some((key, state)) = inner.conns.remove(&id) {
            forget(
                &mut inner.addresses,
                key,
                !state.ready.load(Ordering::Acquire),
            );
            if let Some(why) = why {
                state.close(why);
            }
            self.stats.set_open(inner.conns.len());
        }
    }

    /// Entries in the idle queues (for the eviction benchmark).
    pub fn idle_entries(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.idle.len())
    }
}

/// One connection of `key` less (`in_setup`: it had not finished set-up).
fn forget(addresses: &mut HashMap<IpAddr, Address>, key: IpAddr, in_setup: bool) {
    if let Some(address) = addresses.get_mut(&key) {
        address.conns = address.conns.saturating_sub(1);
        if in_setup {
            address.setup = address.setup.saturating_sub(1);
        }
        if address.conns == 0 {
            addresses.remove(&key);
        }
    }
}
