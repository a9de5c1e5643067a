//! RE2 compatibility of regexes (interim: syntax only; the full checker replaces this module).

/// Envoy's default `max_program_size`.
pub const DEFAULT_MAX_PROGRAM_SIZE: u32 = 100;

/// A construct RE2 reads differently.
pub struct Note {
    pub offset: usize,
    pub message: String,
}

/// An accepted regex.
pub struct Report {
    pub program_size: u32,
    pub notes: Vec<Note>,
}

/// Why RE2 refuses a regex.
#[derive(Debug)]
pub enum Re2Error {
    Unsupported {
        offset: usize,
        construct: String,
        message: String,
    },
    TooLarge {
        size: u32,
        limit: u32,
    },
    Syntax {
        offset: usize,
        message: String,
    },
}

impl std::fmt::Display for Re2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Re2Error::Unsupported { message, .. } | Re2Error::Syntax { message, .. } => {
                f.write_str(message)
            }
            Re2Error::TooLarge { size, limit } => write!(f, "program size {size} exceeds {limit}"),
        }
    }
}

/// Checks a regex as RE2 would compile it.
pub fn check(pattern: &str) -> Result<Report, Re2Error> {
    match regex_syntax::ast::parse::Parser::new().parse(pattern) {
        Ok(_) => Ok(Report {
            program_size: 0,
            notes: Vec::new(),
        }),
        Err(e) => Err(Re2Error::Syntax {
            offset: e.span().start.offset,
            message: e.kind().to_string(),
        }),
    }
}
