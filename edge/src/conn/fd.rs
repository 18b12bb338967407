//! The file-descriptor budget: the soft RLIMIT_NOFILE is raised to the hard
//! limit at start, and connections may use what is left after a reserve
//! for everything else (the core pool, files, Redis, logs).

/// Descriptors kept for everything but client connections: at least this
/// many, and at least a tenth of the limit.
const RESERVE_MIN: u64 = 64;

/// The file-descriptor limit after raising it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (`None` where the
/// system does not tell or allow it).
pub fn raise_nofile() -> Option<FdLimit> {
    let (before, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    let now = rlimit::increase_nofile_limit(u64::MAX).ok()?;
    Some(FdLimit { before, now })
}

/// The soft RLIMIT_NOFILE now (`u64::MAX` when unknown).
pub fn nofile() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// How many client connections `soft` descriptors leave room for.
pub fn connection_cap(soft: u64) -> usize {
    let reserve = RESERVE_MIN.max(soft / 10);
    usize::try_from(soft.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// One descriptor (of `/dev/null`) held back for the moment accept fails
/// with EMFILE: released, it lets the pending connection be accepted at
/// once (the table then closes the connection idle the longest in its
/// place) instead of the listener stalling until evicted sockets close.
#[derive(Debug)]
pub struct Spare(Option<std::fs::File>);

impl Default for Spare {
    /// Takes the spare descriptor (none if even that fails).
    fn default() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }
}

impl Spare {
    /// Gives the descriptor back to the process; whether one was held.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Takes a spare descriptor again if none is held.
    pub fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }
}

/// Whether an accept error means descriptors ran out (EMFILE, ENFILE).
pub fn is_fd_exhaustion(error: &std::io::Error) -> bool {
    // EMFILE = 24, ENFILE = 23 on Linux and the BSDs.
    matches!(error.raw_os_error(), Some(23 | 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_raise() {
        assert_eq!(connection_cap(256), 192);
        assert_eq!(connection_cap(65_536), 58_983);
        assert_eq!(connection_cap(10), 1);
        if let Some(limit) = raise_nofile() {
            assert!(limit.now >= limit.before);
            assert_eq!(nofile(), limit.now);
        }
        assert!(is_fd_exhaustion(&std::io::Error::from_raw_os_error(24)));
        assert!(!is_fd_exhaustion(&std::io::Error::from_raw_os_error(104)));
        let mut spare = Spare::default();
        assert!(spare.release());
        assert!(!spare.release());
        spare.restore();
        assert!(spare.release());
    }
}
