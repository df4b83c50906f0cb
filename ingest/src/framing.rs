//! Cuts a TCP syslog byte stream into messages (RFC 6587), incrementally over chunks.
//!
//! Per frame, the first byte decides: a digit is octet counting (`MSG-LEN SP MSG`, MSG-LEN
//! a non-zero decimal of at most 10 digits), anything else non-transparent framing (MSG up
//! to a LF or NUL trailer; a CR before the LF is dropped). LF, CR and NUL between frames
//! are skipped. Each message is at most `message_bytes_max`; a longer one is an error for
//! that frame and the decoder resynchronizes: an octet-counted frame is skipped by its
//! count, a line is dropped up to its trailer, a bogus octet count drops up to the next LF.
//! The buffer never holds much more than one message, however large the chunks.

/// How a frame was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    OctetCounted,
    NonTransparent,
}

/// One message cut from the stream (without its length prefix or trailer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub message: Vec<u8>,
    pub framing: Framing,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("octet-counted frame of {bytes} bytes exceeds {max}")]
    FrameTooLarge { bytes: u64, max: usize },
    #[error("line exceeds {max} bytes without a trailer")]
    LineTooLong { max: usize },
    #[error("bogus octet count {0:?}")]
    BadOctetCount(String),
    #[error("stream ended inside an octet-counted frame ({have} of {want} bytes)")]
    Truncated { have: usize, want: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At a frame boundary.
    Start,
    /// Dropping the rest of an oversized octet-counted frame: bytes left.
    Skip(u64),
    /// Dropping up to the next trailer.
    Discard,
}

/// Longest MSG-LEN prefix: 10 digits.
const COUNT_DIGITS_MAX: usize = 10;

/// The incremental decoder of one TCP connection.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
    mode: Mode,
}

impl FrameDecoder {
    /// A decoder accepting messages of at most `message_bytes_max` bytes (at least 1).
    pub fn new(message_bytes_max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max: message_bytes_max.max(1),
            mode: Mode::Start,
        }
    }

    /// Feeds the next chunk of the stream; returns every frame it completes, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<Frame, FrameError>> {
        let mut out = Vec::new();
        for piece in chunk.chunks(self.max + COUNT_DIGITS_MAX + 2) {
            self.buf.extend_from_slice(piece);
            while let Some(frame) = self.next_frame() {
                out.push(frame);
            }
        }
        out
    }

    /// The end of the stream: a last line without a trailer is a message; a partial
    /// octet-counted frame is [`FrameError::Truncated`].
    pub fn finish(&mut self) -> Option<Result<Frame, FrameError>> {
        let mode = std::mem::replace(&mut self.mode, Mode::Start);
        let buf = std::mem::take(&mut self.buf);
        let start = buf.iter().position(|b| !is_filler(*b))?;
        if mode != Mode::Start {
            return None;
        }
        let rest = &buf[start..];
        if rest[0].is_ascii_digit() {
            let want = octet_header(rest).ok().flatten().map_or(0, |(n, _)| n);
            return Some(Err(FrameError::Truncated {
                have: rest.len(),
                want,
            }));
        }
        Some(Ok(line_frame(rest)))
    }

    fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        loop {
            match self.mode {
                Mode::Skip(left) => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    self.buf.drain(..n);
                    let left = left - n as u64;
                    if left > 0 {
                        self.mode = Mode::Skip(left);
                        return None;
                    }
                    self.mode = Mode::Start;
                }
                Mode::Discard => match self.buf.iter().position(|b| is_trailer(*b)) {
                    Some(p) => {
                        self.buf.drain(..=p);
                        self.mode = Mode::Start;
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                },
                Mode::Start => return self.start_frame(),
            }
        }
    }

    fn start_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        let skip = self.buf.iter().take_while(|b| is_filler(**b)).count();
        self.buf.drain(..skip);
        let first = *self.buf.first()?;
        if first.is_ascii_digit() {
            self.octet_frame()
        } else {
            self.line()
        }
    }

    fn octet_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        let (count, header) = match octet_header(&self.buf) {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(bogus) => {
                self.mode = Mode::Discard;
                return Some(Err(FrameError::BadOctetCount(bogus)));
            }
        };
        if count > self.max as u64 {
            self.buf.drain(..header);
            self.mode = Mode::Skip(count);
            return Some(Err(FrameError::FrameTooLarge {
                bytes: count,
                max: self.max,
            }));
        }
        let end = header + count as usize;
        if self.buf.len() < end {
            return None;
        }
        let message = self.buf[header..end].to_vec();
        self.buf.drain(..end);
        Some(Ok(Frame {
            message,
            framing: Framing::OctetCounted,
        }))
    }

    fn line(&mut self) -> Option<Result<Frame, FrameError>> {
        let window = self.buf.len().min(self.max + 2);
        match self.buf[..window].iter().position(|b| is_trailer(*b)) {
            Some(p) => {
                let frame = line_frame(&self.buf[..p]);
                self.buf.drain(..=p);
                if frame.message.len() > self.max {
                    return Some(Err(FrameError::LineTooLong { max: self.max }));
                }
                Some(Ok(frame))
            }
            None if self.buf.len() > self.max + 1 => {
                self.buf.drain(..window);
                self.mode = Mode::Discard;
                Some(Err(FrameError::LineTooLong { max: self.max }))
            }
            None => None,
        }
    }
}

fn is_trailer(b: u8) -> bool {
    b == b'\n' || b == 0
}

fn is_filler(b: u8) -> bool {
    matches!(b, b'\n' | b'\r' | 0)
}

fn line_frame(bytes: &[u8]) -> Frame {
    let message = bytes.strip_suffix(b"\r").unwrap_or(bytes).to_vec();
    Frame {
        message,
        framing: Framing::NonTransparent,
    }
}

/// `MSG-LEN SP` at the start of `buf`: `Ok(Some((count, header bytes)))`, `Ok(None)` if more
/// bytes are needed, `Err(text)` if it is not a valid count.
fn octet_header(buf: &[u8]) -> Result<Option<(u64, usize)>, String> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    let shown_end = buf.len().min(digits + 1).min(COUNT_DIGITS_MAX + 1);
    let shown = || String::from_utf8_lossy(&buf[..shown_end]).into_owned();
    if digits > COUNT_DIGITS_MAX {
        return Err(shown());
    }
    let Some(&next) = buf.get(digits) else {
        return Ok(None);
    };
    if next != b' ' || buf[0] == b'0' {
        return Err(shown());
    }
    let count: u64 = std::str::from_utf8(&buf[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(shown)?;
    Ok(Some((count, digits + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(results: Vec<Result<Frame, FrameError>>) -> Vec<Result<String, String>> {
        results
            .into_iter()
            .map(|r| {
                r.map(|f| String::from_utf8_lossy(&f.message).into_owned())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn mixed_framing_and_split_count() {
        let mut d = FrameDecoder::new(100);
        let mut out = d.push(b"1");
        out.extend(d.push(b"1 <1>1 - - - "));
        out.extend(d.push(b"\n<2>hello\r\n5 abcde"));
        assert_eq!(
            messages(out),
            vec![
                Ok("<1>1 - - - ".into()),
                Ok("<2>hello".into()),
                Ok("abcde".into())
            ]
        );
        assert!(d.finish().is_none());
    }

    #[test]
    fn oversized_frames_resynchronize() {
        let mut d = FrameDecoder::new(8);
        let stream = format!("20 {}3 abc<1>123456789012\n<1>ok\n", "a".repeat(20));
        let out = d.push(stream.as_bytes());
        assert_eq!(
            messages(out),
            vec![
                Err("octet-counted frame of 20 bytes exceeds 8".into()),
                Ok("abc".into()),
                Err("line exceeds 8 bytes without a trailer".into()),
                Ok("<1>ok".into()),
            ]
        );
    }

    #[test]
    fn bogus_counts() {
        let mut d = FrameDecoder::new(64);
        let out = d.push(b"12x <1>a\n012 <1>b\n99999999999 x\n<1>c\n");
        assert_eq!(
            messages(out),
            vec![
                Err("bogus octet count \"12x\"".into()),
                Err("bogus octet count \"012 \"".into()),
                Err("bogus octet count \"99999999999\"".into()),
                Ok("<1>c".into()),
            ]
        );
    }

    #[test]
    fn end_of_stream() {
        let mut d = FrameDecoder::new(64);
        assert!(d.push(b"<1>last").is_empty());
        assert_eq!(d.finish(), Some(Ok(line_frame(b"<1>last"))));
        assert!(d.push(b"10 abc").is_empty());
        assert_eq!(
            d.finish(),
            Some(Err(FrameError::Truncated { have: 6, want: 10 }))
        );
    }
}
