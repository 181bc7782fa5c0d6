//! Framing of the server's messages, apart from any I/O (the habit of mini-redis's
//! `Frame::check`): where the next whole message ends in a buffer, and whether its body has the
//! shape its type requires.
//!
//! Every message the frontend reads passes [`check`] before anything looks at it, including
//! those it otherwise ignores (a `RowDescription` answering a `SET`, a notice, a parameter
//! change). A server that sends one malformed message and then waits must end the session at
//! once: without the check, an ignored malformed message is followed by a wait for the
//! `ReadyForQuery` that never comes, and nothing bounds the time between messages (a long
//! query legitimately sends nothing until its first row).
//!
//! The checks are structural only (lengths, counts, terminators, the tags this frontend can
//! receive at all); which message may come when is each exchange's business (`unexpected`).

/// No protocol message may be larger: Redshift's largest row is 1,600 columns of at most 64 KB
/// (about 100 MB), its largest value a SUPER of 16 MB (32 MB as the hex text the scan reads);
/// a corrupt length must not make the frontend allocate without bound.
pub const MAX_MESSAGE: usize = 256 << 20;

/// A message that breaks the protocol: what was wrong, for the error the session ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn violation(tag: u8, what: &str) -> Violation {
    Violation(format!("{} message {what}", name(tag)))
}

/// Whether `buffer` begins with a whole message: `Ok(Some((tag, total)))` with its total length
/// (tag and length word included), `Ok(None)` if more bytes are needed, or the violation its
/// length word is.
pub fn whole_message(buffer: &[u8]) -> Result<Option<(u8, usize)>, Violation> {
    let Some(header) = buffer.get(..5) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_MESSAGE).contains(&length) {
        return Err(Violation(format!(
            "a message of type `{}` gives its length as {length}",
            char::from(header[0]).escape_default()
        )));
    }
    let total = length + 1;
    Ok((buffer.len() >= total).then_some((header[0], total)))
}

/// Checks that `body` has the shape a message of type `tag` must have, and that `tag` is one a
/// server may send this frontend at all (it never starts a COPY or a function call).
pub fn check(tag: u8, body: &[u8]) -> Result<(), Violation> {
    let mut reader = Reader { tag, body, at: 0 };
    match tag {
        // Authentication: a request code and its data (of any length), which the exchange
        // reads.
        b'R' => {
            reader.i32()?;
            reader.at = body.len();
        }
        // BackendKeyData: process id, secret key.
        b'K' => {
            reader.i32()?;
            reader.i32()?;
        }
        // ParameterStatus: name, value.
        b'S' => {
            reader.cstring()?;
            reader.cstring()?;
        }
        b'Z' => {
            let status = reader.bytes(1)?[0];
            if !matches!(status, b'I' | b'T' | b'E') {
                return Err(violation(tag, "has an unknown transaction status"));
            }
        }
        b'T' => {
            let count = reader.count()?;
            for _ in 0..count {
                reader.cstring()?;
                // table oid, column number, type oid, size, modifier, format
                reader.bytes(18)?;
            }
        }
        b'D' => {
            let count = reader.count()?;
            for _ in 0..count {
                let length = reader.i32()?;
                if length < -1 {
                    return Err(violation(tag, "has a negative column length"));
                }
                if length > 0 {
                    reader.bytes(length as usize)?;
                }
            }
        }
        b't' => {
            let count = reader.count()?;
            reader.bytes(4 * count)?;
        }
        // CommandComplete: the command tag.
        b'C' => {
            reader.cstring()?;
        }
        // ErrorResponse, NoticeResponse: fields of a type byte and a string, then a zero byte.
        b'E' | b'N' => loop {
            if reader.bytes(1)?[0] == 0 {
                break;
            }
            reader.cstring()?;
        },
        // NotificationResponse: process id, channel, payload.
        b'A' => {
            reader.i32()?;
            reader.cstring()?;
            reader.cstring()?;
        }
        // NegotiateProtocolVersion: newest minor version, then the options not recognised.
        b'v' => {
            reader.i32()?;
            let count = reader.i32()?;
            if count < 0 {
                return Err(violation(tag, "has a negative count"));
            }
            for _ in 0..count {
                reader.cstring()?;
            }
        }
        // ParseComplete, BindComplete, CloseComplete, NoData, PortalSuspended,
        // EmptyQueryResponse: no body.
        b'1' | b'2' | b'3' | b'n' | b's' | b'I' => {}
        other => {
            return Err(Violation(format!(
                "a message of unknown type `{}`",
                char::from(other).escape_default()
            )))
        }
    }
    if reader.at != body.len() {
        return Err(violation(tag, "is longer than its contents"));
    }
    Ok(())
}

/// The protocol's name for a message type, for errors.
fn name(tag: u8) -> &'static str {
    match tag {
        b'R' => "an Authentication",
        b'K' => "a BackendKeyData",
        b'S' => "a ParameterStatus",
        b'Z' => "a ReadyForQuery",
        b'T' => "a RowDescription",
        b'D' => "a DataRow",
        b't' => "a ParameterDescription",
        b'C' => "a CommandComplete",
        b'E' => "an ErrorResponse",
        b'N' => "a NoticeResponse",
        b'A' => "a NotificationResponse",
        b'v' => "a NegotiateProtocolVersion",
        _ => "a",
    }
}

/// Reads a body front to back; every read past its end is a violation.
struct Reader<'a> {
    tag: u8,
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Violation> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.body.len());
        let end = end.ok_or_else(|| violation(self.tag, "is cut short"))?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn i32(&mut self) -> Result<i32, Violation> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A 16-bit count, which may not be negative.
    fn count(&mut self) -> Result<usize, Violation> {
        let b = self.bytes(2)?;
        usize::try_from(i16::from_be_bytes([b[0], b[1]]))
            .map_err(|_| violation(self.tag, "has a negative count"))
    }

    fn cstring(&mut self) -> Result<(), Violation> {
        let rest = &self.body[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| violation(self.tag, "has an unterminated string"))?;
        self.at += end + 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstring(text: &str) -> Vec<u8> {
        let mut out = text.as_bytes().to_vec();
        out.push(0);
        out
    }

    fn field(name: &str) -> Vec<u8> {
        [cstring(name), vec![0; 18]].concat()
    }

    /// (tag, body, well formed) for every message type a server may send.
    fn cases() -> Vec<(u8, Vec<u8>, bool)> {
        let i16b = |n: i16| n.to_be_bytes().to_vec();
        let i32b = |n: i32| n.to_be_bytes().to_vec();
        vec![
            (b'R', i32b(0), true),
            (b'R', [i32b(5), b"salt".to_vec()].concat(), true),
            (b'R', vec![0, 0], false),
            (b'K', [i32b(1), i32b(2)].concat(), true),
            (b'K', i32b(1), false),
            (b'S', [cstring("a"), cstring("b")].concat(), true),
            (b'S', cstring("a"), false),
            (b'S', [cstring("a"), cstring("b"), vec![1]].concat(), false),
            (b'Z', b"I".to_vec(), true),
            (b'Z', b"X".to_vec(), false),
            (b'Z', Vec::new(), false),
            (b'T', [i16b(2), field("id"), field("")].concat(), true),
            (b'T', [i16b(-1), field("a")].concat(), false),
            (b'T', [i16b(2), field("a")].concat(), false),
            (b'T', [i16b(1), field("a")[..10].to_vec()].concat(), false),
            (b'T', [i16b(1), vec![b'a'; 30]].concat(), false),
            (
                b'D',
                [i16b(2), i32b(2), b"ab".to_vec(), i32b(-1)].concat(),
                true,
            ),
            (b'D', [i16b(1), i32b(3), b"ab".to_vec()].concat(), false),
            (b'D', [i16b(1), i32b(-2)].concat(), false),
            (b'D', [i16b(-1)].concat(), false),
            (b'D', [i16b(1), i32b(i32::MAX)].concat(), false),
            (b't', [i16b(1), i32b(25)].concat(), true),
            (b't', [i16b(2), i32b(25)].concat(), false),
            (b'C', cstring("SELECT 1"), true),
            (b'C', b"SELECT".to_vec(), false),
            (
                b'E',
                [b"C".to_vec(), cstring("42000"), vec![0]].concat(),
                true,
            ),
            (b'E', [b"C".to_vec(), cstring("42000")].concat(), false),
            (b'N', vec![0], true),
            (b'A', [i32b(1), cstring("c"), cstring("p")].concat(), true),
            (b'A', [i32b(1), cstring("c")].concat(), false),
            (b'v', [i32b(0), i32b(1), cstring("x")].concat(), true),
            (b'v', [i32b(0), i32b(-1)].concat(), false),
            (b'1', Vec::new(), true),
            (b's', vec![0], false),
            (b'G', Vec::new(), false),
            (b'W', Vec::new(), false),
            (b'x', Vec::new(), false),
        ]
    }

    #[test]
    fn every_message_type_is_checked_for_its_shape() {
        for (tag, body, good) in cases() {
            let result = check(tag, &body);
            assert_eq!(
                result.is_ok(),
                good,
                "`{}` {body:?}: {result:?}",
                char::from(tag)
            );
        }
    }

    #[test]
    fn a_message_is_whole_only_once_its_length_has_arrived() {
        let message = [b"Z".to_vec(), 5u32.to_be_bytes().to_vec(), b"I".to_vec()].concat();
        for cut in 0..message.len() {
            assert_eq!(whole_message(&message[..cut]), Ok(None), "{cut}");
        }
        assert_eq!(whole_message(&message), Ok(Some((b'Z', 6))));
        let lying = [b"D".to_vec(), 3u32.to_be_bytes().to_vec()].concat();
        assert!(whole_message(&lying).is_err());
        let huge = [
            b"D".to_vec(),
            (MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec(),
        ]
        .concat();
        assert!(whole_message(&huge).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every prefix of every case, with every tag: an error or Ok, never a panic.
        for (_, body, _) in cases() {
            for cut in 0..=body.len() {
                for tag in [
                    b'R', b'K', b'S', b'Z', b'T', b'D', b't', b'C', b'E', b'A', b'v',
                ] {
                    let _ = check(tag, &body[..cut]);
                }
            }
        }
    }
}
