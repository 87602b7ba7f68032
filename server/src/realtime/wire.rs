//! Big-endian cursor over one PostgreSQL wire message body, shared by the replication
//! transport and the pgoutput decoder. It only reads; it rejects reads past the end of the
//! body and C strings without a terminator or with invalid UTF-8, so no input can make it panic.

/// Why a read from a message body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body ended before `wanted` more bytes could be read at `offset`.
    #[error("message truncated: wanted {wanted} bytes at offset {offset}")]
    Truncated { offset: usize, wanted: usize },
    /// A C string had no NUL terminator.
    #[error("unterminated string at offset {offset}")]
    UnterminatedString { offset: usize },
    /// A C string was not valid UTF-8.
    #[error("invalid UTF-8 in string at offset {offset}")]
    InvalidUtf8 { offset: usize },
}

/// A read position inside one message body.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                offset: self.pos,
                wanted: n,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Everything left in the body.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(self.i32()? as u32)
    }

    pub fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(self.i64()? as u64)
    }

    /// A NUL-terminated UTF-8 string (the terminator is consumed, not returned).
    pub fn cstr(&mut self) -> Result<&'a str, WireError> {
        let start = self.pos;
        let Some(len) = self.buf[start..].iter().position(|&b| b == 0) else {
            return Err(WireError::UnterminatedString { offset: start });
        };
        let raw = &self.buf[start..start + len];
        self.pos = start + len + 1;
        std::str::from_utf8(raw).map_err(|_| WireError::InvalidUtf8 { offset: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integers_and_strings() {
        let buf = [0, 1, 0, 0, 0, 2, b'h', b'i', 0, 7];
        let mut r = Reader::new(&buf);
        assert_eq!(r.i16().unwrap(), 1);
        assert_eq!(r.i32().unwrap(), 2);
        assert_eq!(r.cstr().unwrap(), "hi");
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_truncated_and_unterminated() {
        assert_eq!(
            Reader::new(&[0, 0, 1]).i32(),
            Err(WireError::Truncated {
                offset: 0,
                wanted: 4
            })
        );
        assert_eq!(
            Reader::new(b"abc").cstr(),
            Err(WireError::UnterminatedString { offset: 0 })
        );
        assert_eq!(
            Reader::new(&[0xff, 0]).cstr(),
            Err(WireError::InvalidUtf8 { offset: 0 })
        );
    }
}
