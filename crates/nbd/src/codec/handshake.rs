//! Handshake framing outside the options: the server greeting, the client flags and the
//! reply that ends `NBD_OPT_EXPORT_NAME`.

use bytes::{Buf, BufMut, BytesMut};

use super::{DecodeError, Reader, TransmissionFlags};

/// `NBDMAGIC`, the first eight bytes a server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the second greeting magic (newstyle) and the magic of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;

/// The 16-bit handshake flags in the server greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakeFlags(pub u16);

impl HandshakeFlags {
    /// `NBD_FLAG_FIXED_NEWSTYLE`: the server speaks fixed newstyle (option replies).
    pub const FIXED_NEWSTYLE: HandshakeFlags = HandshakeFlags(1 << 0);
    /// `NBD_FLAG_NO_ZEROES`: the server may omit the 124 zero bytes after EXPORT_NAME.
    pub const NO_ZEROES: HandshakeFlags = HandshakeFlags(1 << 1);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: HandshakeFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for HandshakeFlags {
    type Output = HandshakeFlags;
    fn bitor(self, rhs: HandshakeFlags) -> HandshakeFlags {
        HandshakeFlags(self.0 | rhs.0)
    }
}

/// The 32-bit client flags the client answers the greeting with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientFlags(pub u32);

impl ClientFlags {
    /// `NBD_FLAG_C_FIXED_NEWSTYLE`.
    pub const FIXED_NEWSTYLE: ClientFlags = ClientFlags(1 << 0);
    /// `NBD_FLAG_C_NO_ZEROES`: the server must not send the 124 zero bytes.
    pub const NO_ZEROES: ClientFlags = ClientFlags(1 << 1);
    /// Every flag this codec knows; a client setting any other bit must be disconnected.
    pub const KNOWN: ClientFlags = ClientFlags(0b11);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: ClientFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits outside [`ClientFlags::KNOWN`].
    pub fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN.0
    }
}

impl std::ops::BitOr for ClientFlags {
    type Output = ClientFlags;
    fn bitor(self, rhs: ClientFlags) -> ClientFlags {
        ClientFlags(self.0 | rhs.0)
    }
}

/// The newstyle server greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags (18 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Handshake flags; this server sends `FIXED_NEWSTYLE | NO_ZEROES`.
    pub flags: HandshakeFlags,
}

impl Greeting {
    /// Encoded size.
    pub const LEN: usize = 18;

    /// Appends the greeting to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(NBDMAGIC);
        dst.put_u64(IHAVEOPT);
        dst.put_u16(self.flags.0);
    }

    /// Takes a greeting off the front of `src` (client side).
    pub fn decode(src: &mut BytesMut) -> Result<Option<Greeting>, DecodeError> {
        let Some(head) = src.get(..Self::LEN) else {
            return Ok(None);
        };
        let mut r = Reader::new(head, "greeting");
        let magic = r.u64()?;
        if magic != NBDMAGIC {
            return Err(DecodeError::BadMagic {
                what: "NBDMAGIC",
                got: magic,
            });
        }
        let opt = r.u64()?;
        if opt != IHAVEOPT {
            return Err(DecodeError::BadMagic {
                what: "IHAVEOPT",
                got: opt,
            });
        }
        let flags = HandshakeFlags(r.u16()?);
        src.advance(Self::LEN);
        Ok(Some(Greeting { flags }))
    }
}

/// Appends the 4-byte client flags to `dst` (client side).
pub fn encode_client_flags(flags: ClientFlags, dst: &mut BytesMut) {
    dst.put_u32(flags.0);
}

/// Takes the 4-byte client flags off the front of `src`. Unknown bits are returned as
/// sent: whether they end the connection is the server's decision.
pub fn decode_client_flags(src: &mut BytesMut) -> Result<Option<ClientFlags>, DecodeError> {
    let Some(head) = src.get(..4) else {
        return Ok(None);
    };
    let flags = ClientFlags(Reader::new(head, "client flags").u32()?);
    src.advance(4);
    Ok(Some(flags))
}

/// The server's answer to `NBD_OPT_EXPORT_NAME`: export size and transmission flags,
/// followed by 124 zero bytes unless both sides agreed on `NO_ZEROES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportNameReply {
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags.
    pub flags: TransmissionFlags,
    /// True when the 124 zero bytes are omitted (`NBD_FLAG_C_NO_ZEROES` was negotiated).
    pub no_zeroes: bool,
}

impl ExportNameReply {
    /// The size without padding.
    const SHORT: usize = 10;
    /// The padding length.
    const PAD: usize = 124;

    /// Appends the reply to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.size);
        dst.put_u16(self.flags.0);
        if !self.no_zeroes {
            dst.put_bytes(0, Self::PAD);
        }
    }

    /// Takes the reply off the front of `src` (client side). `no_zeroes` says whether the
    /// client negotiated the short form; the padding content is not checked.
    pub fn decode(
        src: &mut BytesMut,
        no_zeroes: bool,
    ) -> Result<Option<ExportNameReply>, DecodeError> {
        let len = if no_zeroes {
            Self::SHORT
        } else {
            Self::SHORT + Self::PAD
        };
        let Some(head) = src.get(..len) else {
            return Ok(None);
        };
        let mut r = Reader::new(head, "export name reply");
        let size = r.u64()?;
        let flags = TransmissionFlags(r.u16()?);
        src.advance(len);
        Ok(Some(ExportNameReply {
            size,
            flags,
            no_zeroes,
        }))
    }
}
