//! Status codes: the one table of codes, reason phrases and ready-made status lines.
//!
//! The table lists every code the IANA registry holds (RFC 9110 section 15 and later RFCs)
//! once; from it come both [`Status::reason`] and the status lines kept ready as constants
//! (`HTTP/1.1 200 OK\r\n`), so a response's first line is one copy.

/// A status code, 100 to 599: the registered ones are constants with their reason phrase
/// ([`Status::NOT_FOUND`]); any other code in that range comes from [`Status::new`]. No
/// value outside the five classes RFC 9110 defines can be made.
///
/// ```
/// use percore::Status;
///
/// assert_eq!(Status::new(404), Some(Status::NOT_FOUND));
/// assert_eq!(Status::new(299).map(Status::code), Some(299));
/// assert_eq!(Status::new(600), None);
/// assert_eq!(Status::new(42), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(pub(crate) u16);

macro_rules! statuses {
    ($($code:literal $name:ident $reason:literal;)*) => {
        impl Status {
            $(
                #[doc = concat!(stringify!($code), " ", $reason, ".")]
                pub const $name: Status = Status($code);
            )*

            /// The reason phrase the registry gives the code, or an empty one for an
            /// unregistered code (which RFC 9112 allows).
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $($code => $reason,)*
                    _ => "",
                }
            }

            /// The status line, CRLF included, of a registered code.
            pub(crate) fn line(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(concat!("HTTP/1.1 ", stringify!($code), " ", $reason, "\r\n")),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    100 CONTINUE "Continue";
    101 SWITCHING_PROTOCOLS "Switching Protocols";
    102 PROCESSING "Processing";
    103 EARLY_HINTS "Early Hints";
    200 OK "OK";
    201 CREATED "Created";
    202 ACCEPTED "Accepted";
    203 NON_AUTHORITATIVE_INFORMATION "Non-Authoritative Information";
    204 NO_CONTENT "No Content";
    205 RESET_CONTENT "Reset Content";
    206 PARTIAL_CONTENT "Partial Content";
    207 MULTI_STATUS "Multi-Status";
    208 ALREADY_REPORTED "Already Reported";
    226 IM_USED "IM Used";
    300 MULTIPLE_CHOICES "Multiple Choices";
    301 MOVED_PERMANENTLY "Moved Permanently";
    302 FOUND "Found";
    303 SEE_OTHER "See Other";
    304 NOT_MODIFIED "Not Modified";
    305 USE_PROXY "Use Proxy";
    307 TEMPORARY_REDIRECT "Temporary Redirect";
    308 PERMANENT_REDIRECT "Permanent Redirect";
    400 BAD_REQUEST "Bad Request";
    401 UNAUTHORIZED "Unauthorized";
    402 PAYMENT_REQUIRED "Payment Required";
    403 FORBIDDEN "Forbidden";
    404 NOT_FOUND "Not Found";
    405 METHOD_NOT_ALLOWED "Method Not Allowed";
    406 NOT_ACCEPTABLE "Not Acceptable";
    407 PROXY_AUTHENTICATION_REQUIRED "Proxy Authentication Required";
    408 REQUEST_TIMEOUT "Request Timeout";
    409 CONFLICT "Conflict";
    410 GONE "Gone";
    411 LENGTH_REQUIRED "Length Required";
    412 PRECONDITION_FAILED "Precondition Failed";
    413 CONTENT_TOO_LARGE "Content Too Large";
    414 URI_TOO_LONG "URI Too Long";
    415 UNSUPPORTED_MEDIA_TYPE "Unsupported Media Type";
    416 RANGE_NOT_SATISFIABLE "Range Not Satisfiable";
    417 EXPECTATION_FAILED "Expectation Failed";
    421 MISDIRECTED_REQUEST "Misdirected Request";
    422 UNPROCESSABLE_CONTENT "Unprocessable Content";
    423 LOCKED "Locked";
    424 FAILED_DEPENDENCY "Failed Dependency";
    425 TOO_EARLY "Too Early";
    426 UPGRADE_REQUIRED "Upgrade Required";
    428 PRECONDITION_REQUIRED "Precondition Required";
    429 TOO_MANY_REQUESTS "Too Many Requests";
    431 REQUEST_HEADER_FIELDS_TOO_LARGE "Request Header Fields Too Large";
    451 UNAVAILABLE_FOR_LEGAL_REASONS "Unavailable For Legal Reasons";
    500 INTERNAL_SERVER_ERROR "Internal Server Error";
    501 NOT_IMPLEMENTED "Not Implemented";
    502 BAD_GATEWAY "Bad Gateway";
    503 SERVICE_UNAVAILABLE "Service Unavailable";
    504 GATEWAY_TIMEOUT "Gateway Timeout";
    505 HTTP_VERSION_NOT_SUPPORTED "HTTP Version Not Supported";
    506 VARIANT_ALSO_NEGOTIATES "Variant Also Negotiates";
    507 INSUFFICIENT_STORAGE "Insufficient Storage";
    508 LOOP_DETECTED "Loop Detected";
    511 NETWORK_AUTHENTICATION_REQUIRED "Network Authentication Required";
}

impl Status {
    /// The status `code`, if it is one HTTP defines a class for (100 to 599).
    pub const fn new(code: u16) -> Option<Status> {
        match code {
            100..=599 => Some(Status(code)),
            _ => None,
        }
    }

    /// The number.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The code's class, 1 for 1xx … 5 for 5xx: the index percore counts responses by.
    pub fn class(self) -> usize {
        usize::from(self.0 / 100).min(5)
    }

    /// Whether it is an interim (1xx) status, which no final response may have.
    pub fn is_interim(self) -> bool {
        self.0 < 200
    }

    /// Whether a response with this status carries no body and no `Content-Length`
    /// (1xx, 204 and 304).
    pub fn has_no_body(self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }
}

impl From<Status> for u16 {
    fn from(status: Status) -> u16 {
        status.0
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason() {
            "" => write!(f, "{}", self.0),
            reason => write!(f, "{} {reason}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_reasons_come_from_one_table() {
        assert_eq!(Status::OK.line(), Some("HTTP/1.1 200 OK\r\n"));
        assert_eq!(Status(418).line(), None);
        assert_eq!(Status(418).reason(), "");
        assert_eq!(Status::URI_TOO_LONG.reason(), "URI Too Long");
        assert_eq!(Status::NOT_FOUND.to_string(), "404 Not Found");
        assert_eq!(Status(299).class(), 2);
        assert_eq!(Status::SERVICE_UNAVAILABLE.class(), 5);
    }

    #[test]
    fn only_codes_of_the_five_classes_are_statuses() {
        assert_eq!(Status::new(99), None);
        assert_eq!(Status::new(100), Some(Status::CONTINUE));
        assert_eq!(Status::new(599).map(Status::code), Some(599));
        assert_eq!(Status::new(600), None);
        assert_eq!(Status::new(0), None);
        assert_eq!(Status::new(u16::MAX), None);
        assert!(Status::EARLY_HINTS.is_interim());
        assert!(!Status::OK.is_interim());
    }
}
