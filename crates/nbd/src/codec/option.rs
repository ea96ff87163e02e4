//! Option haggling: option requests (`IHAVEOPT`, option, length, data), their parsed
//! meaning, and option replies (`0x3e889045565a9`, option, reply type, length, data).
//!
//! Framing and meaning are split: [`RawOption::decode`] only frames (a bad magic or an
//! over-cap length ends the connection), while [`NbdOption::parse`] interprets the data
//! and reports an [`OptionError`], which the server answers with `NBD_REP_ERR_INVALID`
//! and then carries on haggling.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{DecodeError, IHAVEOPT, Reader, TransmissionFlags, wire_u16, wire_u32};

/// The option-reply magic.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The largest option payload accepted (or option reply a client accepts). Real options
/// are a name (≤ 4096 bytes) plus a few integers.
pub const MAX_OPTION_PAYLOAD: u32 = 64 << 10;
/// The longest export name (and other protocol string) the protocol allows.
pub const MAX_NAME_LEN: usize = 4096;

/// Option request header: magic (8), option (4), length (4).
const OPTION_HEADER_LEN: usize = 16;
/// Option reply header: magic (8), option (4), reply type (4), length (4).
const REPLY_HEADER_LEN: usize = 20;
/// Bit 31 marks error reply types.
const REP_ERR_BIT: u32 = 1 << 31;

/// An option number (`NBD_OPT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionCode {
    /// `NBD_OPT_EXPORT_NAME` (1): choose an export and enter transmission; cannot fail
    /// gracefully.
    ExportName,
    /// `NBD_OPT_ABORT` (2).
    Abort,
    /// `NBD_OPT_LIST` (3).
    List,
    /// `NBD_OPT_STARTTLS` (5): not supported by this server.
    StartTls,
    /// `NBD_OPT_INFO` (6).
    Info,
    /// `NBD_OPT_GO` (7).
    Go,
    /// `NBD_OPT_STRUCTURED_REPLY` (8).
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT` (10): not supported by this server.
    ListMetaContext,
    /// `NBD_OPT_SET_META_CONTEXT` (11): not supported by this server.
    SetMetaContext,
    /// `NBD_OPT_EXTENDED_HEADERS` (12): not supported by this server.
    ExtendedHeaders,
    /// Any other number.
    Unknown(u32),
}

impl OptionCode {
    /// The wire number.
    pub fn to_u32(self) -> u32 {
        match self {
            OptionCode::ExportName => 1,
            OptionCode::Abort => 2,
            OptionCode::List => 3,
            OptionCode::StartTls => 5,
            OptionCode::Info => 6,
            OptionCode::Go => 7,
            OptionCode::StructuredReply => 8,
            OptionCode::ListMetaContext => 10,
            OptionCode::SetMetaContext => 11,
            OptionCode::ExtendedHeaders => 12,
            OptionCode::Unknown(n) => n,
        }
    }

    /// The code for a wire number.
    pub fn from_u32(n: u32) -> OptionCode {
        match n {
            1 => OptionCode::ExportName,
            2 => OptionCode::Abort,
            3 => OptionCode::List,
            5 => OptionCode::StartTls,
            6 => OptionCode::Info,
            7 => OptionCode::Go,
            8 => OptionCode::StructuredReply,
            10 => OptionCode::ListMetaContext,
            11 => OptionCode::SetMetaContext,
            12 => OptionCode::ExtendedHeaders,
            n => OptionCode::Unknown(n),
        }
    }
}

/// One framed option request, its data not yet interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    /// The option.
    pub code: OptionCode,
    /// Its data (at most [`MAX_OPTION_PAYLOAD`] bytes).
    pub data: Bytes,
}

impl RawOption {
    /// Appends the request to `dst` (client side).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(IHAVEOPT);
        dst.put_u32(self.code.to_u32());
        dst.put_u32(wire_u32(self.data.len()));
        dst.put_slice(&self.data);
    }

    /// Takes one option request off the front of `src`. The length is checked against
    /// [`MAX_OPTION_PAYLOAD`] before any buffer is reserved.
    pub fn decode(src: &mut BytesMut) -> Result<Option<RawOption>, DecodeError> {
        // Refuse a bad magic as soon as it arrives, not only once a whole header is in.
        if let Some(magic) = src.get(..8) {
            let magic = Reader::new(magic, "option magic").u64()?;
            if magic != IHAVEOPT {
                return Err(DecodeError::BadMagic {
                    what: "option request",
                    got: magic,
                });
            }
        }
        let Some(head) = src.get(..OPTION_HEADER_LEN) else {
            return Ok(None);
        };
        let mut r = Reader::new(head, "option header");
        let _magic = r.u64()?;
        let code = OptionCode::from_u32(r.u32()?);
        let len = r.u32()?;
        if len > MAX_OPTION_PAYLOAD {
            return Err(DecodeError::TooLarge {
                what: "option payload",
                len: u64::from(len),
                max: u64::from(MAX_OPTION_PAYLOAD),
            });
        }
        // Cannot fail: `len` ≤ 64 KiB fits in usize on every supported target.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let total = OPTION_HEADER_LEN.saturating_add(len);
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(OPTION_HEADER_LEN);
        let data = src.split_to(len).freeze();
        Ok(Some(RawOption { code, data }))
    }
}

/// An information item a client asks for in `NBD_OPT_INFO` / `NBD_OPT_GO`, and the type
/// of an `NBD_REP_INFO` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InfoType {
    /// `NBD_INFO_EXPORT` (0): size and transmission flags (always sent).
    Export,
    /// `NBD_INFO_NAME` (1): the canonical export name.
    Name,
    /// `NBD_INFO_DESCRIPTION` (2): a human-readable description.
    Description,
    /// `NBD_INFO_BLOCK_SIZE` (3): minimum, preferred and maximum block sizes.
    BlockSize,
    /// Any other number (ignored by the server, as the protocol asks).
    Unknown(u16),
}

impl InfoType {
    /// The wire number.
    pub fn to_u16(self) -> u16 {
        match self {
            InfoType::Export => 0,
            InfoType::Name => 1,
            InfoType::Description => 2,
            InfoType::BlockSize => 3,
            InfoType::Unknown(n) => n,
        }
    }

    /// The type for a wire number.
    pub fn from_u16(n: u16) -> InfoType {
        match n {
            0 => InfoType::Export,
            1 => InfoType::Name,
            2 => InfoType::Description,
            3 => InfoType::BlockSize,
            n => InfoType::Unknown(n),
        }
    }
}

/// The data of `NBD_OPT_INFO` and `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// The export name (empty: the default export).
    pub name: String,
    /// The information items requested, in request order.
    pub items: Vec<InfoType>,
}

/// An option request with its data interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdOption {
    /// `NBD_OPT_EXPORT_NAME`.
    ExportName(String),
    /// `NBD_OPT_ABORT` (any data is ignored).
    Abort,
    /// `NBD_OPT_LIST`.
    List,
    /// `NBD_OPT_INFO`.
    Info(InfoRequest),
    /// `NBD_OPT_GO`.
    Go(InfoRequest),
    /// `NBD_OPT_STRUCTURED_REPLY`.
    StructuredReply,
    /// Any option this server does not implement; answered with `NBD_REP_ERR_UNSUP`.
    Unsupported(OptionCode),
}

/// Why an option's data is invalid. The server answers `NBD_REP_ERR_INVALID` (or, for
/// `NBD_OPT_EXPORT_NAME`, which cannot fail gracefully, closes the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// The option takes no data but some was sent.
    #[error("option takes no data, got {0} bytes")]
    UnexpectedData(usize),
    /// The length fields inside the data do not add up to the data length.
    #[error("option data length is inconsistent")]
    BadLength,
    /// The export name is longer than [`MAX_NAME_LEN`].
    #[error("export name of {0} bytes is too long")]
    NameTooLong(usize),
    /// The export name is not UTF-8.
    #[error("export name is not UTF-8")]
    NotUtf8,
}

impl NbdOption {
    /// Interprets a framed option.
    pub fn parse(raw: &RawOption) -> Result<NbdOption, OptionError> {
        let data = raw.data.as_ref();
        match raw.code {
            OptionCode::ExportName => parse_name(data).map(NbdOption::ExportName),
            OptionCode::Abort => Ok(NbdOption::Abort),
            OptionCode::List => no_data(data).map(|()| NbdOption::List),
            OptionCode::StructuredReply => no_data(data).map(|()| NbdOption::StructuredReply),
            OptionCode::Info => parse_info_request(data).map(NbdOption::Info),
            OptionCode::Go => parse_info_request(data).map(NbdOption::Go),
            code => Ok(NbdOption::Unsupported(code)),
        }
    }

    /// The framed form (client side). `Unsupported` options are sent without data.
    pub fn to_raw(&self) -> RawOption {
        let mut data = BytesMut::new();
        let code = match self {
            NbdOption::ExportName(name) => {
                data.put_slice(name.as_bytes());
                OptionCode::ExportName
            }
            NbdOption::Abort => OptionCode::Abort,
            NbdOption::List => OptionCode::List,
            NbdOption::Info(req) => {
                encode_info_request(req, &mut data);
                OptionCode::Info
            }
            NbdOption::Go(req) => {
                encode_info_request(req, &mut data);
                OptionCode::Go
            }
            NbdOption::StructuredReply => OptionCode::StructuredReply,
            NbdOption::Unsupported(code) => *code,
        };
        RawOption {
            code,
            data: data.freeze(),
        }
    }
}

fn no_data(data: &[u8]) -> Result<(), OptionError> {
    if data.is_empty() {
        Ok(())
    } else {
        Err(OptionError::UnexpectedData(data.len()))
    }
}

fn parse_name(raw: &[u8]) -> Result<String, OptionError> {
    if raw.len() > MAX_NAME_LEN {
        return Err(OptionError::NameTooLong(raw.len()));
    }
    String::from_utf8(raw.to_vec()).map_err(|_| OptionError::NotUtf8)
}

fn parse_info_request(data: &[u8]) -> Result<InfoRequest, OptionError> {
    let mut r = Reader::new(data, "info request");
    let name_len = r.u32().map_err(|_| OptionError::BadLength)?;
    let name_len = usize::try_from(name_len).map_err(|_| OptionError::BadLength)?;
    let name = parse_name(r.bytes(name_len).map_err(|_| OptionError::BadLength)?)?;
    let count = usize::from(r.u16().map_err(|_| OptionError::BadLength)?);
    // The count must describe exactly the remaining bytes; checked before allocating.
    if r.rest_len() != count.saturating_mul(2) {
        return Err(OptionError::BadLength);
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let ty = r.u16().map_err(|_| OptionError::BadLength)?;
        items.push(InfoType::from_u16(ty));
    }
    Ok(InfoRequest { name, items })
}

fn encode_info_request(req: &InfoRequest, dst: &mut BytesMut) {
    dst.put_u32(wire_u32(req.name.len()));
    dst.put_slice(req.name.as_bytes());
    let items = req.items.get(..usize::from(u16::MAX)).unwrap_or(&req.items);
    dst.put_u16(wire_u16(items.len()));
    for item in items {
        dst.put_u16(item.to_u16());
    }
}

impl Reader<'_> {
    fn rest_len(&self) -> usize {
        self.buf.len()
    }
}

/// An option-reply error type (`NBD_REP_ERR_*`, bit 31 set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepError {
    /// `NBD_REP_ERR_UNSUP`: unknown option.
    Unsup,
    /// `NBD_REP_ERR_POLICY`: forbidden by server policy.
    Policy,
    /// `NBD_REP_ERR_INVALID`: syntactically invalid option.
    Invalid,
    /// `NBD_REP_ERR_PLATFORM`.
    Platform,
    /// `NBD_REP_ERR_TLS_REQD`.
    TlsReqd,
    /// `NBD_REP_ERR_UNKNOWN`: no such export.
    Unknown,
    /// `NBD_REP_ERR_SHUTDOWN`: the server is shutting down.
    Shutdown,
    /// `NBD_REP_ERR_BLOCK_SIZE_REQD`.
    BlockSizeReqd,
    /// `NBD_REP_ERR_TOO_BIG`.
    TooBig,
    /// Any other error type, as its full 32-bit value (bit 31 set).
    Other(u32),
}

impl RepError {
    /// The wire reply type (bit 31 set).
    pub fn to_u32(self) -> u32 {
        match self {
            RepError::Unsup => REP_ERR_BIT | 1,
            RepError::Policy => REP_ERR_BIT | 2,
            RepError::Invalid => REP_ERR_BIT | 3,
            RepError::Platform => REP_ERR_BIT | 4,
            RepError::TlsReqd => REP_ERR_BIT | 5,
            RepError::Unknown => REP_ERR_BIT | 6,
            RepError::Shutdown => REP_ERR_BIT | 7,
            RepError::BlockSizeReqd => REP_ERR_BIT | 8,
            RepError::TooBig => REP_ERR_BIT | 9,
            RepError::Other(n) => n | REP_ERR_BIT,
        }
    }

    /// The error for a wire reply type with bit 31 set.
    pub fn from_u32(n: u32) -> RepError {
        match n & !REP_ERR_BIT {
            1 => RepError::Unsup,
            2 => RepError::Policy,
            3 => RepError::Invalid,
            4 => RepError::Platform,
            5 => RepError::TlsReqd,
            6 => RepError::Unknown,
            7 => RepError::Shutdown,
            8 => RepError::BlockSizeReqd,
            9 => RepError::TooBig,
            _ => RepError::Other(n | REP_ERR_BIT),
        }
    }
}

/// The payload of an `NBD_REP_INFO` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Info {
    /// `NBD_INFO_EXPORT`.
    Export {
        /// Export size in bytes.
        size: u64,
        /// Transmission flags.
        flags: TransmissionFlags,
    },
    /// `NBD_INFO_NAME`.
    Name(String),
    /// `NBD_INFO_DESCRIPTION`.
    Description(String),
    /// `NBD_INFO_BLOCK_SIZE`.
    BlockSize {
        /// Minimum block size (a power of two; 1 means any alignment).
        min: u32,
        /// Preferred block size.
        preferred: u32,
        /// Maximum size of one READ or WRITE.
        max: u32,
    },
    /// Any other info type (client side only).
    Other {
        /// The info type.
        ty: u16,
        /// Its data.
        data: Bytes,
    },
}

/// What an option reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionReplyBody {
    /// `NBD_REP_ACK` (1).
    Ack,
    /// `NBD_REP_SERVER` (2): one export in an `NBD_OPT_LIST` answer.
    Server {
        /// The export name.
        name: String,
        /// Free-form details for humans (empty from this server).
        details: String,
    },
    /// `NBD_REP_INFO` (3).
    Info(Info),
    /// An error type with a message for humans (truncated to [`MAX_NAME_LEN`] bytes).
    Error {
        /// The error type.
        kind: RepError,
        /// The message (may be empty).
        message: String,
    },
    /// Any other non-error reply type (client side only).
    Other {
        /// The reply type.
        ty: u32,
        /// Its data.
        data: Bytes,
    },
}

/// One option reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionReply {
    /// The option being answered.
    pub option: OptionCode,
    /// The reply.
    pub body: OptionReplyBody,
}

impl OptionReply {
    /// Appends the reply to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let mut data = BytesMut::new();
        let ty = match &self.body {
            OptionReplyBody::Ack => 1,
            OptionReplyBody::Server { name, details } => {
                data.put_u32(wire_u32(name.len()));
                data.put_slice(name.as_bytes());
                data.put_slice(details.as_bytes());
                2
            }
            OptionReplyBody::Info(info) => {
                encode_info(info, &mut data);
                3
            }
            OptionReplyBody::Error { kind, message } => {
                data.put_slice(truncate_str(message, MAX_NAME_LEN).as_bytes());
                kind.to_u32()
            }
            OptionReplyBody::Other { ty, data: d } => {
                data.put_slice(d);
                *ty
            }
        };
        dst.put_u64(OPTION_REPLY_MAGIC);
        dst.put_u32(self.option.to_u32());
        dst.put_u32(ty);
        dst.put_u32(wire_u32(data.len()));
        dst.put_slice(&data);
    }

    /// Takes one option reply off the front of `src` (client side), refusing payloads
    /// above [`MAX_OPTION_PAYLOAD`].
    pub fn decode(src: &mut BytesMut) -> Result<Option<OptionReply>, DecodeError> {
        let Some(head) = src.get(..REPLY_HEADER_LEN) else {
            return Ok(None);
        };
        let mut r = Reader::new(head, "option reply header");
        let magic = r.u64()?;
        if magic != OPTION_REPLY_MAGIC {
            return Err(DecodeError::BadMagic {
                what: "option reply",
                got: magic,
            });
        }
        let option = OptionCode::from_u32(r.u32()?);
        let ty = r.u32()?;
        let len = r.u32()?;
        if len > MAX_OPTION_PAYLOAD {
            return Err(DecodeError::TooLarge {
                what: "option reply payload",
                len: u64::from(len),
                max: u64::from(MAX_OPTION_PAYLOAD),
            });
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let total = REPLY_HEADER_LEN.saturating_add(len);
        let Some(data) = src.get(REPLY_HEADER_LEN..total) else {
            src.reserve(total.saturating_sub(src.len()));
            return Ok(None);
        };
        let body = decode_reply_body(ty, data)?;
        src.advance(total);
        Ok(Some(OptionReply { option, body }))
    }
}

fn decode_reply_body(ty: u32, data: &[u8]) -> Result<OptionReplyBody, DecodeError> {
    if ty & REP_ERR_BIT != 0 {
        return Ok(OptionReplyBody::Error {
            kind: RepError::from_u32(ty),
            message: String::from_utf8_lossy(data).into_owned(),
        });
    }
    let mut r = Reader::new(data, "option reply");
    let body = match ty {
        1 => {
            if !r.is_empty() {
                return Err(DecodeError::BadLength {
                    what: "NBD_REP_ACK payload",
                    len: data.len() as u64,
                });
            }
            OptionReplyBody::Ack
        }
        2 => {
            let name_len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
            let name = r.string(name_len, "export name")?;
            let details = String::from_utf8_lossy(r.rest()).into_owned();
            OptionReplyBody::Server { name, details }
        }
        3 => OptionReplyBody::Info(decode_info(&mut r)?),
        ty => OptionReplyBody::Other {
            ty,
            data: Bytes::copy_from_slice(data),
        },
    };
    Ok(body)
}

fn encode_info(info: &Info, dst: &mut BytesMut) {
    match info {
        Info::Export { size, flags } => {
            dst.put_u16(InfoType::Export.to_u16());
            dst.put_u64(*size);
            dst.put_u16(flags.0);
        }
        Info::Name(name) => {
            dst.put_u16(InfoType::Name.to_u16());
            dst.put_slice(truncate_str(name, MAX_NAME_LEN).as_bytes());
        }
        Info::Description(text) => {
            dst.put_u16(InfoType::Description.to_u16());
            dst.put_slice(truncate_str(text, MAX_NAME_LEN).as_bytes());
        }
        Info::BlockSize {
            min,
            preferred,
            max,
        } => {
            dst.put_u16(InfoType::BlockSize.to_u16());
            dst.put_u32(*min);
            dst.put_u32(*preferred);
            dst.put_u32(*max);
        }
        Info::Other { ty, data } => {
            dst.put_u16(*ty);
            dst.put_slice(data);
        }
    }
}

fn decode_info(r: &mut Reader<'_>) -> Result<Info, DecodeError> {
    let ty = r.u16()?;
    let info = match InfoType::from_u16(ty) {
        InfoType::Export => Info::Export {
            size: r.u64()?,
            flags: TransmissionFlags(r.u16()?),
        },
        InfoType::Name => Info::Name(r.string(r.rest_len(), "NBD_INFO_NAME")?),
        InfoType::Description => Info::Description(r.string(r.rest_len(), "NBD_INFO_DESCRIPTION")?),
        InfoType::BlockSize => Info::BlockSize {
            min: r.u32()?,
            preferred: r.u32()?,
            max: r.u32()?,
        },
        InfoType::Unknown(ty) => Info::Other {
            ty,
            data: Bytes::copy_from_slice(r.rest()),
        },
    };
    if !r.is_empty() {
        return Err(DecodeError::BadLength {
            what: "NBD_REP_INFO payload",
            len: r.rest_len() as u64,
        });
    }
    Ok(info)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}
