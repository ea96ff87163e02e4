//! Fuzz target: option data straight into `NbdOption::parse`, so the payloads of
//! `NBD_OPT_GO`/`INFO` (name, info requests), `EXPORT_NAME`, `LIST`, `ABORT` and
//! `STRUCTURED_REPLY` are reached without first finding the framing. Checks that parsing
//! never panics, that errors name what is wrong, and that parsed options re-encode to the
//! same data.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sd_fuzz::nbd::parse_and_check;
use sd_nbd::codec::{OptionCode, RawOption};

fuzz_target!(|data: &[u8]| {
    // Byte 0 picks the option (0..=15 covers every known one and some unknown ones).
    let Some((&code, data)) = data.split_first() else {
        return;
    };
    let raw = RawOption {
        code: OptionCode::from_u32(u32::from(code & 0x0f)),
        data: Bytes::copy_from_slice(data),
    };
    let _ = parse_and_check(&raw);
});
