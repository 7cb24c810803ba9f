//! The frames rank processes exchange over TCP (little-endian): a joining rank's hello, a
//! collective's request (rank r to rank 0: what it called, and its data) and rank 0's reply (the
//! result, or the error that ended the communicator). Every read and write has a deadline.

use crate::reduce::{DType, RedOp};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Why a transfer ended early.
#[derive(Debug)]
pub enum WireError {
    /// The other end closed the connection (its process ended, or it aborted).
    Closed,
    /// Nothing came (or could be sent) before the deadline.
    TimedOut,
    Other(std::io::Error),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Closed => write!(f, "connection closed"),
            WireError::TimedOut => write!(f, "timed out"),
            WireError::Other(e) => write!(f, "{e}"),
        }
    }
}

fn classify(e: std::io::Error) -> WireError {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::NotConnected => WireError::Closed,
        ErrorKind::WouldBlock | ErrorKind::TimedOut => WireError::TimedOut,
        _ => WireError::Other(e),
    }
}

fn left(deadline: Instant) -> Result<Duration, WireError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(WireError::TimedOut)
    } else {
        Ok(d)
    }
}

/// Fill `buf` from `s` before `deadline`.
pub fn read_full(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), WireError> {
    let mut at = 0;
    while at < buf.len() {
        s.set_read_timeout(Some(left(deadline)?))
            .map_err(classify)?;
        match s.read(&mut buf[at..]) {
            Ok(0) => return Err(WireError::Closed),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => match classify(e) {
                // A timed-out read is retried until the deadline itself has passed.
                WireError::TimedOut => {}
                other => return Err(other),
            },
        }
    }
    Ok(())
}

/// Write all of `buf` to `s` before `deadline`.
pub fn write_full(s: &mut TcpStream, buf: &[u8], deadline: Instant) -> Result<(), WireError> {
    let mut at = 0;
    while at < buf.len() {
        s.set_write_timeout(Some(left(deadline)?))
            .map_err(classify)?;
        match s.write(&buf[at..]) {
            Ok(0) => return Err(WireError::Closed),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => match classify(e) {
                WireError::TimedOut => {}
                other => return Err(other),
            },
        }
    }
    Ok(())
}

const HELLO_MAGIC: &[u8; 8] = b"ncfhello";

/// A joining rank's first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub tag: [u8; 16],
    pub rank: u32,
    pub world: u32,
}

impl Hello {
    pub const LEN: usize = 8 + 16 + 4 + 4;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.extend_from_slice(HELLO_MAGIC);
        b.extend_from_slice(&self.tag);
        b.extend_from_slice(&self.rank.to_le_bytes());
        b.extend_from_slice(&self.world.to_le_bytes());
        b
    }

    /// None when the bytes are not a hello at all (a stray connection).
    pub fn decode(b: &[u8; Self::LEN]) -> Option<Hello> {
        if &b[..8] != HELLO_MAGIC {
            return None;
        }
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&b[8..24]);
        Some(Hello {
            tag,
            rank: u32_at(b, 24),
            world: u32_at(b, 28),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Which collective a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AllReduce = 1,
    Broadcast = 2,
    /// `ncclCommFinalize`: a barrier, so that no rank closes its connections while another
    /// still expects them.
    Finalize = 3,
}

/// A collective as one rank called it: every rank must call the same one, in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub kind: Kind,
    pub dtype: u32,
    pub op: u32,
    pub root: u32,
    pub count: u64,
    /// 1 for the communicator's first collective, 2 for the next, ...
    pub seq: u64,
}

impl Call {
    /// Header bytes: kind, dtype, op, root (u32 each), count, seq, payload length (u64 each).
    pub const LEN: usize = 4 * 4 + 3 * 8;

    pub fn encode(&self, payload_len: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        for w in [self.kind as u32, self.dtype, self.op, self.root] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        for w in [self.count, self.seq, payload_len] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// The call and its payload length; None when the kind is unknown.
    pub fn decode(b: &[u8; Self::LEN]) -> Option<(Call, u64)> {
        let kind = match u32_at(b, 0) {
            1 => Kind::AllReduce,
            2 => Kind::Broadcast,
            3 => Kind::Finalize,
            _ => return None,
        };
        let call = Call {
            kind,
            dtype: u32_at(b, 4),
            op: u32_at(b, 8),
            root: u32_at(b, 12),
            count: u64_at(b, 16),
            seq: u64_at(b, 24),
        };
        Some((call, u64_at(b, 32)))
    }

    /// "ncclAllReduce (sum) of 1027 f32 (collective 3)".
    pub fn describe(&self) -> String {
        let ty = DType::from_code(self.dtype).map_or("?", DType::name);
        let what = match self.kind {
            Kind::AllReduce => format!(
                "ncclAllReduce ({}) of {} {ty}",
                RedOp::from_code(self.op).map_or("?", RedOp::name),
                self.count
            ),
            Kind::Broadcast => format!(
                "ncclBroadcast from rank {} of {} {ty}",
                self.root, self.count
            ),
            Kind::Finalize => "ncclCommFinalize".to_string(),
        };
        format!("{what} (collective {})", self.seq)
    }
}

/// Rank 0's answer: status 0 and the result, or an NCCL error code and its message.
pub fn encode_reply(status: u32, body: &[u8]) -> Vec<u8> {
    let mut b = reply_head(status, body.len() as u64).to_vec();
    b.extend_from_slice(body);
    b
}

/// A reply's first 12 bytes: status, then the body's length.
pub fn reply_head(status: u32, len: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&status.to_le_bytes());
    b[4..].copy_from_slice(&len.to_le_bytes());
    b
}

/// Read a reply: (status, body). A body longer than `max` is refused (a garbled frame).
pub fn read_reply(
    s: &mut TcpStream,
    max: u64,
    deadline: Instant,
) -> Result<(u32, Vec<u8>), WireError> {
    let mut head = [0u8; 12];
    read_full(s, &mut head, deadline)?;
    let (status, len) = (u32_at(&head, 0), u64_at(&head, 4));
    // An error message is short; a result is at most `max`.
    if len > max.max(1 << 16) {
        return Err(WireError::Other(std::io::Error::other(format!(
            "a reply of {len} bytes where at most {max} were expected"
        ))));
    }
    let mut body = vec![0u8; len as usize];
    read_full(s, &mut body, deadline)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn frames_round_trip() {
        let h = Hello {
            tag: [7; 16],
            rank: 2,
            world: 3,
        };
        let b: [u8; Hello::LEN] = h.encode().try_into().unwrap();
        assert_eq!(Hello::decode(&b), Some(h));
        assert_eq!(Hello::decode(&[0; Hello::LEN]), None);
        let c = Call {
            kind: Kind::Broadcast,
            dtype: 7,
            op: 0,
            root: 1,
            count: 1027,
            seq: 9,
        };
        let b: [u8; Call::LEN] = c.encode(4108).try_into().unwrap();
        assert_eq!(Call::decode(&b), Some((c, 4108)));
        assert_eq!(
            c.describe(),
            "ncclBroadcast from rank 1 of 1027 f32 (collective 9)"
        );
        let a = Call {
            kind: Kind::AllReduce,
            op: 2,
            dtype: 5,
            ..c
        };
        assert_eq!(
            a.describe(),
            "ncclAllReduce (max) of 1027 u64 (collective 9)"
        );
    }

    #[test]
    fn reads_end_at_the_deadline_or_when_the_other_end_closes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        write_full(
            &mut a,
            &encode_reply(6, b"rank 1 died"),
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
        let (st, body) = read_reply(&mut b, 0, Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!((st, body.as_slice()), (6, &b"rank 1 died"[..]));
        let t0 = Instant::now();
        let mut buf = [0u8; 4];
        let r = read_full(
            &mut b,
            &mut buf,
            Instant::now() + Duration::from_millis(200),
        );
        assert!(matches!(r, Err(WireError::TimedOut)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(3));
        drop(a);
        let r = read_full(&mut b, &mut buf, Instant::now() + Duration::from_secs(5));
        assert!(matches!(r, Err(WireError::Closed)), "{r:?}");
    }
}
