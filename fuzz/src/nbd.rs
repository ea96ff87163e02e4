//! Checks on NBD option parsing shared by the `nbd_handshake` (framed options in a stream)
//! and `nbd_option` (option data straight into the parser) targets.

use sd_nbd::codec::{InfoRequest, MAX_NAME_LEN, NbdOption, OptionCode, OptionError, RawOption};

/// Parses `raw` and checks the outcome: a parsed option re-encodes to the same data and
/// parses back to itself; an error names what is actually wrong with the data.
pub fn parse_and_check(raw: &RawOption) -> Result<NbdOption, OptionError> {
    let parsed = NbdOption::parse(raw);
    match &parsed {
        Ok(opt) => {
            let again = opt.to_raw();
            assert_eq!(again.code, raw.code, "{opt:?} re-encodes to another option");
            assert_eq!(NbdOption::parse(&again).as_ref(), Ok(opt));
            match opt {
                // Data is ignored (ABORT) or dropped (options this server does not parse).
                NbdOption::Abort | NbdOption::Unsupported(_) => {}
                // The encoding of everything else is canonical.
                _ => assert_eq!(again.data, raw.data, "{opt:?} is not re-encoded as sent"),
            }
            if let NbdOption::ExportName(name)
            | NbdOption::Info(InfoRequest { name, .. })
            | NbdOption::Go(InfoRequest { name, .. }) = opt
            {
                assert!(name.len() <= MAX_NAME_LEN);
            }
        }
        Err(OptionError::UnexpectedData(n)) => {
            assert!(matches!(
                raw.code,
                OptionCode::List | OptionCode::StructuredReply
            ));
            assert_eq!(*n, raw.data.len());
            assert_ne!(*n, 0);
        }
        Err(OptionError::BadLength) => {
            assert!(matches!(raw.code, OptionCode::Info | OptionCode::Go));
        }
        Err(OptionError::NameTooLong(n)) => assert!(*n > MAX_NAME_LEN),
        Err(OptionError::NotUtf8) => {}
    }
    parsed
}
