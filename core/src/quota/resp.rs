//! The Redis protocol (RESP2) as the quota backend speaks it: a request is
//! an array of bulk strings written straight into the connection's buffer
//! (no command object built first), and a reply is read by a small parser
//! over the bytes received so far (`None` until the reply is whole). The
//! quota scripts answer integers and arrays of integers; the parser reads
//! every RESP2 type, so an unexpected answer is an error, never a hang.
//!
//! Why not the `redis` crate's pieces (it is a dependency): writing the
//! reservation's `EVALSHA` (two budgets) and reading its reply takes 4,611
//! instructions here (6,971 before each argument's header went in one
//! copy and integers were read without `str::parse`), 11,372 with
//! `redis::Cmd::write_packed_command` and its `ValueCodec` (the
//! combine-based parser, most of the difference), 20,670 with
//! `redis::parse_redis_value` (callgrind, 1,000 vs 11,000 steps, fat LTO,
//! the same bytes on the wire; 2026-12-06).

/// A request being written: its arguments go after a header slot, and
/// [`Request::finish`] writes the `*<count>` header in front of them.
pub struct Request<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    count: usize,
}

/// Room for the `*<count>\r\n` header (a count of up to 13 digits).
const HEADER: usize = 16;

impl<'a> Request<'a> {
    /// A request appended to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        buf.resize(start + HEADER, 0);
        Self {
            buf,
            start,
            count: 0,
        }
    }

    /// One argument made of `parts` (a key: prefix, name, suffix).
    pub fn parts(&mut self, parts: &[&[u8]]) -> &mut Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // `$<len>\r\n` is written whole (one copy, not four).
        let mut head = [0u8; 24];
        let at = format_uint(len as u64, (&mut head[1..21]).try_into().expect("20 bytes")) + 1;
        head[at - 1] = b'$';
        head[21..23].copy_from_slice(b"\r\n");
        self.buf.reserve(len + 26);
        self.buf.extend_from_slice(&head[at - 1..23]);
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.extend_from_slice(b"\r\n");
        self.count += 1;
        self
    }

    /// One argument.
    pub fn arg(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.parts(&[bytes.as_ref()])
    }

    /// A number, in decimal (written whole: `$<n>\r\n<digits>\r\n`).
    pub fn uint(&mut self, value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let at = format_uint(value, &mut digits);
        let n = digits.len() - at;
        let mut whole = [0u8; 28];
        whole[0] = b'$';
        let head = if n < 10 {
            whole[1] = b'0' + n as u8;
            2
        } else {
            whole[1..3].copy_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
            3
        };
        whole[head..head + 2].copy_from_slice(b"\r\n");
        whole[head + 2..head + 2 + n].copy_from_slice(&digits[at..]);
        let end = head + 4 + n;
        whole[end - 2..end].copy_from_slice(b"\r\n");
        self.buf.extend_from_slice(&whole[..end]);
        self.count += 1;
        self
    }

    /// A signed number, in decimal.
    pub fn int(&mut self, value: i64) -> &mut Self {
        let mut digits = [0u8; 20];
        let at = format_uint(value.unsigned_abs(), &mut digits);
        if value < 0 {
            self.parts(&[b"-", &digits[at..]])
        } else {
            self.arg(&digits[at..])
        }
    }

    /// Writes the header; the request is `buf[returned..]`.
    pub fn finish(self) -> usize {
        let mut header = [0u8; HEADER];
        let mut digits = [0u8; 20];
        let at = format_uint(self.count as u64, &mut digits);
        let len = 3 + digits.len() - at;
        let from = HEADER - len;
        header[from] = b'*';
        header[from + 1..HEADER - 2].copy_from_slice(&digits[at..]);
        header[HEADER - 2..].copy_from_slice(b"\r\n");
        let slot = self.start..self.start + HEADER;
        self.buf[slot].copy_from_slice(&header);
        self.start + from
    }
}

/// `value`'s decimal digits, right-aligned in `out`; returns where they start.
fn format_uint(mut value: u64, out: &mut [u8; 20]) -> usize {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return at;
        }
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `$-1` or `*-1`.
    Nil,
    /// `:<n>`.
    Int(i64),
    /// `$<len>` and its bytes.
    Bulk(Vec<u8>),
    /// `+<text>`.
    Status(String),
    /// `-<text>`: Redis refused the command.
    Error(String),
    /// `*<count>` and its elements.
    Array(Vec<Value>),
}

/// The bytes are not RESP2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Redis sent a malformed reply")]
pub struct Malformed;

/// Arrays nested deeper than this are refused (the scripts' are flat).
const MAX_DEPTH: usize = 4;

/// The reply at the start of `buf` and the bytes it took, or `None` when
/// more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, Malformed> {
    value(buf, 0, 0)
}

fn value(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, Malformed> {
    let Some((kind, text, next)) = line(buf, at) else {
        return Ok(None);
    };
    let v = match kind {
        b':' => Value::Int(int(text)?),
        b'+' => Value::Status(String::from_utf8_lossy(text).into_owned()),
        b'-' => Value::Error(String::from_utf8_lossy(text).into_owned()),
        b'$' => match int(text)? {
            -1 => Value::Nil,
            len => {
                let len = usize::try_from(len).map_err(|_| Malformed)?;
                let end = next + len;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(Malformed);
                }
                return Ok(Some((Value::Bulk(buf[next..end].to_vec()), end + 2)));
            }
        },
        b'*' => match int(text)? {
            -1 => Value::Nil,
            count if depth < MAX_DEPTH => {
                let count = usize::try_from(count).map_err(|_| Malformed)?;
                // Every element takes 3 bytes at least: no allocation for
                // a count the bytes could not hold.
                let mut items = Vec::with_capacity(count.min(buf.len() / 3));
                let mut at = next;
                for _ in 0..count {
                    let Some((item, end)) = value(buf, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = end;
                }
                return Ok(Some((Value::Array(items), at)));
            }
            _ => return Err(Malformed),
        },
        _ => return Err(Malformed),
    };
    Ok(Some((v, next)))
}

/// The line at `at`: its type byte, its text, and where the next begins.
fn line(buf: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let rest = buf.get(at..)?;
    let mut from = 0;
    let end = loop {
        let cr = from + rest[from..].iter().position(|b| *b == b'\r')?;
        if *rest.get(cr + 1)? == b'\n' {
            break cr;
        }
        from = cr + 1;
    };
    let (&kind, text) = rest[..end].split_first()?;
    Some((kind, text, at + end + 2))
}

/// A decimal integer (digits read here: no UTF-8 check and `str::parse`).
fn int(text: &[u8]) -> Result<i64, Malformed> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(Malformed);
    }
    let mut n: i64 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return Err(Malformed);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(Malformed)?;
    }
    Ok(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_an_array_of_bulk_strings() {
        let mut buf = b"junk".to_vec();
        let mut r = Request::new(&mut buf);
        r.arg("EVALSHA")
            .uint(0)
            .uint(1234567890)
            .parts(&[b"q:", b"k", b":r"]);
        r.int(-42).int(7);
        let start = r.finish();
        assert_eq!(
            &buf[start..],
            b"*6\r\n$7\r\nEVALSHA\r\n$1\r\n0\r\n$10\r\n1234567890\r\n$5\r\nq:k:r\r\n$3\r\n-42\r\n$1\r\n7\r\n"
        );
        assert_eq!(&buf[..4], b"junk");
    }

    #[test]
    fn a_reply_is_read_whole_or_not_at_all() {
        let reply = b"*3\r\n:17\r\n:-2\r\n$3\r\nabc\r\n+OK\r\n";
        let whole = b"*3\r\n:17\r\n:-2\r\n$3\r\nabc\r\n".len();
        for cut in 0..whole {
            assert_eq!(parse(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        let expected = Value::Array(vec![
            Value::Int(17),
            Value::Int(-2),
            Value::Bulk(b"abc".to_vec()),
        ]);
        assert_eq!(parse(reply), Ok(Some((expected, whole))));
        assert_eq!(
            parse(b"-NOSCRIPT No matching script\r\n"),
            Ok(Some((
                Value::Error("NOSCRIPT No matching script".into()),
                30
            )))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Value::Nil, 5))));
        assert_eq!(parse(b"?x\r\n"), Err(Malformed));
        assert_eq!(parse(b":12a\r\n"), Err(Malformed));
        assert_eq!(
            parse(b":-9223372036854775807\r\n"),
            Ok(Some((Value::Int(-i64::MAX), 23)))
        );
        assert_eq!(parse(b":9223372036854775808\r\n"), Err(Malformed));
        assert_eq!(parse(b":\r\n"), Err(Malformed));
        assert_eq!(
            parse(b"+a\rb\r\n"),
            Ok(Some((Value::Status("a\rb".into()), 6)))
        );
        assert_eq!(parse(b"$3\r\nabcd\r\n"), Err(Malformed));
        assert_eq!(
            parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(Malformed)
        );
    }
}
