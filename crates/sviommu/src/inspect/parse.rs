//! Parsing what `inspect` is given: numbers, PCI requester IDs, accesses, request files.

use std::fmt;

use sviommu_pgtable::Access;

/// Why a value on the command line or in a request file could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a number in decimal or `0x` hex.
    #[error("`{0}` is not a number (decimal, or hex with 0x)")]
    Number(String),
    /// Not `bus:dev.fn` (optionally `segment:` first) nor a plain number.
    #[error("`{0}` is not a PCI device (bb:dd.f, ssss:bb:dd.f) or a requester ID")]
    Device(String),
    /// Not `read`, `write` or `exec` (`r`, `w`, `x`), optionally with `+priv`.
    #[error("`{0}` is not an access (read, write, exec; add +priv for a supervisor request)")]
    Access(String),
    /// A number too large for the field.
    #[error("`{0}` is too large for a {1}")]
    TooLarge(String, &'static str),
    /// `FILE@ADDR` with an empty file name.
    #[error("`{0}` names no file (FILE or FILE@ADDR)")]
    Image(String),
    /// A field of a request line.
    #[error("line {line}: {field}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        error: Box<ParseError>,
    },
    /// A request line with the wrong number of fields.
    #[error("line {line}: expected `device,pasid-or-empty,addr,access`, found {found} field(s)")]
    Fields {
        /// 1-based line number.
        line: usize,
        /// How many fields it had.
        found: usize,
    },
}

/// A number in decimal or `0x` hex, `_` separators allowed.
pub fn number(s: &str) -> Result<u64, ParseError> {
    let t = s.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| ParseError::Number(s.to_owned()))
}

/// A PASID (up to 32 bits here: the unit itself faults one wider than it supports).
pub fn pasid(s: &str) -> Result<u32, ParseError> {
    u32::try_from(number(s)?).map_err(|_| ParseError::TooLarge(s.to_owned(), "PASID"))
}

/// An SMMUv3 StreamID: a number (decimal or `0x` hex) up to 32 bits (the SMMU itself reports
/// one beyond SMMU_IDR1.SIDSIZE or the Stream table as C_BAD_STREAMID).
pub fn stream_id(s: &str) -> Result<u32, ParseError> {
    u32::try_from(number(s)?).map_err(|_| ParseError::TooLarge(s.to_owned(), "StreamID"))
}

/// An SMMUv3 SubstreamID (a PCIe PASID), up to 32 bits here: the SMMU itself reports one
/// beyond SSIDSIZE or the STE's S1CDMax as C_BAD_SUBSTREAMID.
pub fn substream_id(s: &str) -> Result<u32, ParseError> {
    u32::try_from(number(s)?).map_err(|_| ParseError::TooLarge(s.to_owned(), "SubstreamID"))
}

/// A 32-bit register value (SMMU_IDRn, SMMU_STRTAB_BASE_CFG).
pub fn reg32(s: &str) -> Result<u32, ParseError> {
    u32::try_from(number(s)?).map_err(|_| ParseError::TooLarge(s.to_owned(), "32-bit register"))
}

/// A PCI requester ID: `bb:dd.f`, `ssss:bb:dd.f` (segment must be 0 here: one unit per
/// segment) or a plain 16-bit number. Returns the 16-bit RID `bus << 8 | dev << 3 | fn`.
pub fn requester_id(s: &str) -> Result<u16, ParseError> {
    let bad = || ParseError::Device(s.to_owned());
    let t = s.trim();
    if !t.contains(':') {
        return number(t).ok().and_then(|n| u16::try_from(n).ok()).ok_or_else(bad);
    }
    let parts: Vec<&str> = t.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [bus, devfn] => (*bus, *devfn),
        [seg, bus, devfn] if u16::from_str_radix(seg, 16).is_ok_and(|s| s == 0) => (*bus, *devfn),
        _ => return Err(bad()),
    };
    let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
    let bus = u8::from_str_radix(bus, 16).map_err(|_| bad())?;
    let dev = u8::from_str_radix(dev, 16).ok().filter(|&d| d < 32).ok_or_else(bad)?;
    let func = u8::from_str_radix(func, 16).ok().filter(|&f| f < 8).ok_or_else(bad)?;
    Ok(u16::from(bus) << 8 | u16::from(dev) << 3 | u16::from(func))
}

/// A requester ID as `bb:dd.f`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf(pub u16);

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.0 >> 8, (self.0 >> 3) & 0x1f, self.0 & 7)
    }
}

/// `read`, `write` or `exec` (or `r`, `w`, `x`), unprivileged; with a `+priv` suffix
/// (`write+priv`), a supervisor request.
pub fn access(s: &str) -> Result<Access, ParseError> {
    let t = s.trim().to_ascii_lowercase();
    let (kind, privileged) = match t.strip_suffix("+priv") {
        Some(kind) => (kind, true),
        None => (t.as_str(), false),
    };
    let a = match kind {
        "read" | "r" => Access::READ,
        "write" | "w" => Access::WRITE,
        "exec" | "x" | "execute" => Access::EXEC,
        _ => return Err(ParseError::Access(s.to_owned())),
    };
    Ok(if privileged { a.privileged() } else { a })
}

/// The name `access` parses back: `read`, `write` or `exec`, `+priv` when privileged.
pub fn access_name(a: Access) -> &'static str {
    match (a.exec, a.write, a.privileged) {
        (true, _, false) => "exec",
        (true, _, true) => "exec+priv",
        (false, true, false) => "write",
        (false, true, true) => "write+priv",
        (false, false, false) => "read",
        (false, false, true) => "read+priv",
    }
}

/// An `--image` argument: `FILE`, or `FILE@ADDR` for a raw piece at `ADDR`. Only a suffix that
/// parses as a number is an address, so a file name may contain `@`.
pub fn image_spec(s: &str) -> Result<(std::path::PathBuf, Option<u64>), ParseError> {
    let (path, at) = match s.rsplit_once('@') {
        Some((path, addr)) => match number(addr) {
            Ok(at) => (path, Some(at)),
            Err(_) => (s, None),
        },
        None => (s, None),
    };
    if path.is_empty() {
        return Err(ParseError::Image(s.to_owned()));
    }
    Ok((path.into(), at))
}

/// One line of a request file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLine {
    /// 1-based line number, for messages.
    pub line: usize,
    /// The device field as written (a BDF for VT-d, a StreamID for SMMUv3).
    pub device: String,
    /// PASID / SubstreamID, if any.
    pub pasid: Option<u32>,
    /// The address.
    pub addr: u64,
    /// The access.
    pub access: Access,
}

/// Parses a request file: one `device,pasid-or-empty,addr,access` per line; blank lines and
/// lines starting with `#` are skipped. The first bad line is reported with its number.
pub fn request_lines(text: &str) -> Result<Vec<RequestLine>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = t.split(',').map(str::trim).collect();
        let [device, pasid, addr, acc] = fields.as_slice() else {
            return Err(ParseError::Fields { line, found: fields.len() });
        };
        let at = |field, error| ParseError::Line { line, field, error: Box::new(error) };
        let pasid = if pasid.is_empty() {
            None
        } else {
            Some(self::pasid(pasid).map_err(|e| at("pasid", e))?)
        };
        out.push(RequestLine {
            line,
            device: (*device).to_owned(),
            pasid,
            addr: number(addr).map_err(|e| at("addr", e))?,
            access: access(acc).map_err(|e| at("access", e))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_devices() {
        assert_eq!(number("0x1000"), Ok(0x1000));
        assert_eq!(number("4096"), Ok(4096));
        assert_eq!(number("0xffff_0000"), Ok(0xffff_0000));
        assert!(number("12k").is_err());
        assert_eq!(
            pasid("0x1000000000").unwrap_err().to_string(),
            "`0x1000000000` is too large for a PASID"
        );
        assert_eq!(requester_id("00:1f.2"), Ok(0x00fa));
        assert_eq!(requester_id("0000:3a:00.1"), Ok(0x3a01));
        assert_eq!(requester_id("0x3a01"), Ok(0x3a01));
        assert!(requester_id("00:20.0").is_err(), "device 32 does not exist");
        assert!(requester_id("00:1f.8").is_err(), "function 8 does not exist");
        assert!(requester_id("0001:00:00.0").is_err(), "one unit, segment 0");
        assert!(requester_id("0x10000").is_err());
        assert_eq!(Bdf(0x00fa).to_string(), "00:1f.2");
        assert!(requester_id("00:1f").is_err());
        assert!(requester_id("zz:00.0").is_err());
    }

    #[test]
    fn accesses_round_trip_through_their_names() {
        for a in [Access::READ, Access::WRITE, Access::EXEC] {
            for a in [a, a.privileged()] {
                assert_eq!(access(access_name(a)), Ok(a));
            }
        }
        assert_eq!(access(" W+PRIV "), Ok(Access::WRITE.privileged()));
        assert!(access("priv").is_err());
        assert!(access("read+").is_err());
    }

    #[test]
    fn image_specs_take_an_address_only_when_it_is_one() {
        assert_eq!(image_spec("mem.raw"), Ok(("mem.raw".into(), None)));
        assert_eq!(image_spec("mem.raw@0x1000"), Ok(("mem.raw".into(), Some(0x1000))));
        assert_eq!(image_spec("a@b.raw"), Ok(("a@b.raw".into(), None)));
        assert_eq!(image_spec("x@y@4096"), Ok(("x@y".into(), Some(4096))));
        assert!(image_spec("@0x1000").is_err());
    }

    #[test]
    fn request_files_name_the_bad_line_and_field() {
        let text = "# device,pasid,addr,access\n00:01.0,,0x1000,read\n\n00:01.0,5,0x2000,w\n";
        let lines = request_lines(text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].line, lines[1].pasid, lines[1].addr), (4, Some(5), 0x2000));
        assert_eq!(lines[1].access, Access::WRITE);
        let err = request_lines("00:01.0,,0x1000,read\n00:01.0,,zz,read\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: addr: `zz` is not a number (decimal, or hex with 0x)");
        let err = request_lines("00:01.0,0x1000,read\n").unwrap_err();
        assert_eq!(err, ParseError::Fields { line: 1, found: 3 });
        let err = request_lines("1,,0,fetch").unwrap_err();
        assert!(err.to_string().starts_with("line 1: access:"), "{err}");
    }
}
