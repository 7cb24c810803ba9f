//! The unique id: where rank 0 listens (an IPv4 address and port) and a random tag that tells
//! this communicator's connections from any other's, in the 128 bytes of `ncclUniqueId`.

use std::collections::HashMap;
use std::ffi::c_char;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// `ncclUniqueId` (cudarc's `ncclUniqueId`: 128 `char`s, passed by value).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UniqueId {
    pub internal: [c_char; 128],
}

/// The first bytes of every id the stand-in makes (an id from real NCCL is refused by them).
const MAGIC: &[u8; 8] = b"ncfnccl1";

/// What an id says: rank 0's listening address and the communicator's tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendezvous {
    pub addr: SocketAddrV4,
    pub tag: [u8; 16],
}

impl Rendezvous {
    /// Layout: magic (8), IPv4 address (4), port (2, big-endian), tag (16), zeros.
    pub fn to_id(self) -> UniqueId {
        let mut b = [0u8; 128];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.addr.ip().octets());
        b[12..14].copy_from_slice(&self.addr.port().to_be_bytes());
        b[14..30].copy_from_slice(&self.tag);
        UniqueId {
            internal: b.map(|x| x as c_char),
        }
    }

    pub fn from_id(id: &UniqueId) -> Result<Rendezvous, String> {
        let b = id.internal.map(|x| x as u8);
        if &b[..8] != MAGIC {
            return Err(
                "the unique id was not made by this stand-in's ncclGetUniqueId \
                        (a real NCCL id, or an id lost on the way to this rank)"
                    .into(),
            );
        }
        let ip = Ipv4Addr::new(b[8], b[9], b[10], b[11]);
        let port = u16::from_be_bytes([b[12], b[13]]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&b[14..30]);
        Ok(Rendezvous {
            addr: SocketAddrV4::new(ip, port),
            tag,
        })
    }
}

/// A tag no other communicator has: std's randomly keyed hasher over the process id, the time
/// and a counter (no random-number crate for 16 bytes).
pub fn fresh_tag() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut tag = [0u8; 16];
    for (k, half) in tag.chunks_exact_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(k as u64);
        h.write_u32(std::process::id());
        h.write_u128(now);
        h.write_u64(n);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    tag
}

/// Listeners made by `ncclGetUniqueId` in this process, by tag, until rank 0's init takes its
/// own: rank 0 must join in the process that made the id (as ncf does).
static LISTENERS: Mutex<Option<HashMap<[u8; 16], TcpListener>>> = Mutex::new(None);

/// A new id: a listening socket on 127.0.0.1 (port chosen by the system) and a fresh tag.
pub fn make() -> std::io::Result<Rendezvous> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    let addr = match listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => {
            return Err(std::io::Error::other(
                "bound 127.0.0.1 but got an IPv6 address",
            ))
        }
    };
    let rz = Rendezvous {
        addr,
        tag: fresh_tag(),
    };
    LISTENERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(rz.tag, listener);
    Ok(rz)
}

/// Rank 0's listener for `rz` (once), if this process made that id.
pub fn take_listener(rz: &Rendezvous) -> Option<TcpListener> {
    LISTENERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()?
        .remove(&rz.tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_and_a_foreign_one_is_refused() {
        let rz = make().unwrap();
        assert_eq!(rz.addr.ip(), &Ipv4Addr::LOCALHOST);
        assert_ne!(rz.addr.port(), 0);
        let id = rz.to_id();
        assert_eq!(std::mem::size_of::<UniqueId>(), 128);
        assert_eq!(Rendezvous::from_id(&id).unwrap(), rz);
        let zero = UniqueId { internal: [0; 128] };
        let e = Rendezvous::from_id(&zero).unwrap_err();
        assert!(e.contains("not made by this stand-in"), "{e}");
        // The listener is handed out once.
        assert!(take_listener(&rz).is_some());
        assert!(take_listener(&rz).is_none());
    }

    #[test]
    fn tags_differ() {
        let tags: std::collections::HashSet<_> = (0..1000).map(|_| fresh_tag()).collect();
        assert_eq!(tags.len(), 1000);
    }
}
