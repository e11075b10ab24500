//! Content codings (RFC 9110 section 8.4.1) and the choice among them that a request's
//! `Accept-Encoding` field allows (section 12.5.3).
//!
//! The field is read where it lies in the request's bytes, one member at a time: nothing is
//! allocated. What it says is kept as a weight per coding percore knows ([`Acceptance`]);
//! the caller then picks among the codings it can send, in the server's order
//! ([`Acceptance::ranked`]). Which codings the server offers, and for which bodies, is the
//! configuration's and the caller's business; so is making the coded bytes.

/// A content coding percore can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Zstandard (RFC 8878).
    Zstd,
    /// Brotli (RFC 7932).
    Br,
    /// gzip (RFC 1952).
    Gzip,
}

impl Coding {
    /// Every coding, in percore's default order of preference.
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// Its token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of a file holding a body in this coding (`style.css.gz`).
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Zstd => ".zst",
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// The coding a token names, in any case (`x-gzip` is gzip, as section 8.4.1.3 asks).
    pub fn from_token(token: &[u8]) -> Option<Coding> {
        Coding::ALL
            .into_iter()
            .find(|coding| token.eq_ignore_ascii_case(coding.token().as_bytes()))
            .or_else(|| {
                token
                    .eq_ignore_ascii_case(b"x-gzip")
                    .then_some(Coding::Gzip)
            })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The highest weight, `q=1`, in thousandths.
const Q_ONE: u16 = 1000;

/// What a request's `Accept-Encoding` fields accept: a weight from 0 (refused) to 1000
/// (`q=1`) for each coding percore knows.
///
/// A coding the fields do not name takes the weight of `*`, or 0 without one. A request
/// without the field accepts no coding: RFC 9110 would allow any, but a client that says
/// nothing may not decode (nginx and Caddy send such a client the identity body too). A
/// member named twice keeps its first weight; a member that is not a token, or whose weight
/// is malformed, is passed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acceptance {
    weights: [u16; Coding::ALL.len()],
}

impl Acceptance {
    /// Reads every `Accept-Encoding` field line of a request (their values, in order).
    pub fn parse<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Acceptance {
        // None: not named yet.
        let mut named: [Option<u16>; Coding::ALL.len()] = [None; Coding::ALL.len()];
        let mut star: Option<u16> = None;
        for value in fields {
            for member in value.split(|&b| b == b',') {
                let Some((token, weight)) = member_weight(member) else {
                    continue;
                };
                if token == b"*" {
                    star.get_or_insert(weight);
                } else if let Some(coding) = Coding::from_token(token) {
                    named[coding.index()].get_or_insert(weight);
                }
            }
        }
        let mut weights = [0; Coding::ALL.len()];
        for (weight, named) in weights.iter_mut().zip(named) {
            *weight = named.or(star).unwrap_or(0);
        }
        Acceptance { weights }
    }

    /// The weight the request gives `coding` (0: refused), in thousandths.
    pub fn weight(&self, coding: Coding) -> u16 {
        self.weights[coding.index()]
    }

    /// The codings of `offered` (the server's order) that the request accepts, best first:
    /// the highest weight, and among equal weights the server's order.
    pub fn ranked(&self, offered: &[Coding]) -> Ranked {
        let mut ranked = Ranked::default();
        for &coding in offered {
            let weight = self.weight(coding);
            if weight == 0 || ranked.as_slice().contains(&coding) {
                continue;
            }
            // After every coding of at least its weight: a stable insertion.
            let at = ranked
                .as_slice()
                .iter()
                .position(|&c| self.weight(c) < weight)
                .unwrap_or(ranked.len);
            ranked.codings.copy_within(at..ranked.len, at + 1);
            ranked.codings[at] = coding;
            ranked.len += 1;
        }
        ranked
    }
}

/// Codings in order of preference, at most one of each (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranked {
    codings: [Coding; Coding::ALL.len()],
    len: usize,
}

impl Default for Ranked {
    fn default() -> Ranked {
        Ranked {
            codings: Coding::ALL,
            len: 0,
        }
    }
}

impl Ranked {
    /// The codings, best first.
    pub fn as_slice(&self) -> &[Coding] {
        &self.codings[..self.len]
    }
}

/// One member of the list: its token (`*` included) and weight, or none when it is empty,
/// not a token, or carries a malformed weight. Parameters other than `q` are passed over.
fn member_weight(member: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = member.split(|&b| b == b';');
    let token = parts.next()?.trim_ascii();
    let is_token =
        token == b"*" || (!token.is_empty() && token.iter().all(|&b| super::is_tchar(b)));
    if !is_token {
        return None;
    }
    let mut weight = Q_ONE;
    for parameter in parts {
        let parameter = parameter.trim_ascii();
        let eq = parameter.iter().position(|&b| b == b'=')?;
        let (name, value) = (
            parameter[..eq].trim_ascii(),
            parameter[eq + 1..].trim_ascii(),
        );
        if name.eq_ignore_ascii_case(b"q") {
            weight = qvalue(value)?;
        }
    }
    Some((token, weight))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        let digit = fraction.get(i).map_or(0, |&d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(Q_ONE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    fn ranked(fields: &[&str]) -> Vec<Coding> {
        Acceptance::parse(fields.iter().map(|f| f.as_bytes()))
            .ranked(&Coding::ALL)
            .as_slice()
            .to_vec()
    }

    #[test]
    fn the_servers_order_breaks_ties() {
        assert_eq!(ranked(&["gzip, deflate, br, zstd"]), [Zstd, Br, Gzip]);
        assert_eq!(ranked(&["gzip, br"]), [Br, Gzip]);
        assert_eq!(ranked(&["gzip"]), [Gzip]);
        let gzip_first = Acceptance::parse([&b"gzip, br, zstd"[..]]);
        assert_eq!(gzip_first.ranked(&[Gzip, Br]).as_slice(), [Gzip, Br]);
    }

    #[test]
    fn higher_weights_win_over_the_servers_order() {
        assert_eq!(
            ranked(&["zstd;q=0.5, gzip;q=0.9, br;q=0.7"]),
            [Gzip, Br, Zstd]
        );
        assert_eq!(ranked(&["zstd;q=0.001, gzip"]), [Gzip, Zstd]);
        assert_eq!(ranked(&["br;q=1.000, gzip;q=0.999"]), [Br, Gzip]);
    }

    #[test]
    fn zero_refuses_and_the_star_covers_the_rest() {
        assert_eq!(ranked(&["gzip;q=0, br"]), [Br]);
        assert_eq!(ranked(&["*"]), [Zstd, Br, Gzip]);
        assert_eq!(ranked(&["*;q=0.5, gzip"]), [Gzip, Zstd, Br]);
        assert_eq!(ranked(&["*, br;q=0"]), [Zstd, Gzip]);
        assert_eq!(ranked(&["*;q=0"]), []);
        assert_eq!(ranked(&["identity"]), []);
        assert_eq!(ranked(&["identity;q=0, *;q=0"]), []);
        assert_eq!(ranked(&["gzip;q=0.000"]), []);
    }

    #[test]
    fn no_field_and_an_empty_field_accept_nothing() {
        assert_eq!(ranked(&[]), []);
        assert_eq!(ranked(&[""]), []);
        assert_eq!(ranked(&[" , ,"]), []);
    }

    #[test]
    fn several_field_lines_are_one_list() {
        assert_eq!(ranked(&["gzip;q=0.2", "br;q=0.4"]), [Br, Gzip]);
        // The first mention of a coding keeps its weight, across lines too.
        assert_eq!(ranked(&["br;q=0", "br"]), []);
    }

    #[test]
    fn tokens_and_parameters_are_case_insensitive_with_whitespace() {
        assert_eq!(ranked(&["  GZip ;  Q = 0.5 ,\tBR;q=0.6"]), [Br, Gzip]);
        assert_eq!(ranked(&["ZSTD"]), [Zstd]);
        assert_eq!(ranked(&["x-gzip"]), [Gzip]);
    }

    #[test]
    fn malformed_members_are_passed_over() {
        for field in [
            "gzip;q=1.5",
            "gzip;q=2",
            "gzip;q=0.1234",
            "gzip;q=",
            "gzip;q=abc",
            "gzip;q=.5",
            "gzip;q=1.001",
            "gzip;q",
            "gz ip",
            "gzip\"",
            "[gzip]",
        ] {
            assert_eq!(ranked(&[field]), [], "{field}");
        }
        assert_eq!(ranked(&["gzip;q=5, br"]), [Br]);
        assert_eq!(ranked(&["gzip;level=9"]), [Gzip]);
        assert_eq!(ranked(&["deflate, compress, unknown;q=1"]), []);
    }

    #[test]
    fn weights_have_up_to_three_decimals() {
        let weight = |field: &str| Acceptance::parse([field.as_bytes()]).weight(Gzip);
        assert_eq!(weight("gzip;q=0.5"), 500);
        assert_eq!(weight("gzip;q=0.05"), 50);
        assert_eq!(weight("gzip;q=0.125"), 125);
        assert_eq!(weight("gzip;q=0."), 0);
        assert_eq!(weight("gzip;q=1."), 1000);
        assert_eq!(weight("gzip;q=1.0"), 1000);
        assert_eq!(weight("gzip"), 1000);
    }
}
