//! Character classes as RE2 builds them: rune ranges, case folding, and the Unicode groups
//! that survive Envoy's Latin-1 encoding.

/// The largest rune RE2 knows (`Runemax`).
pub(super) const RUNE_MAX: u32 = 0x10FFFF;
/// The largest rune Envoy's Latin-1 RE2 keeps (`rune_max_`).
pub(super) const LATIN1_MAX: u32 = 0xFF;

/// A set of runes kept as sorted, disjoint, non-adjacent inclusive ranges, like RE2's
/// `CharClassBuilder`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Class {
    ranges: Vec<(u32, u32)>,
}

impl Class {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Adds `lo..=hi`; returns false when every rune was already present, which is how
    /// RE2's `AddRange` reports it.
    pub(super) fn add_range(&mut self, lo: u32, hi: u32) -> bool {
        if lo > hi {
            return false;
        }
        if self.contains_range(lo, hi) {
            return false;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let (mut nlo, mut nhi) = (lo, hi);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b.saturating_add(1) < nlo {
                out.push((a, b));
            } else if nhi.saturating_add(1) < a {
                if !placed {
                    out.push((nlo, nhi));
                    placed = true;
                }
                out.push((a, b));
            } else {
                nlo = nlo.min(a);
                nhi = nhi.max(b);
            }
        }
        if !placed {
            out.push((nlo, nhi));
        }
        out.sort_unstable();
        self.ranges = out;
        true
    }

    fn contains_range(&self, lo: u32, hi: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= lo && hi <= b)
    }

    pub(super) fn contains(&self, r: u32) -> bool {
        self.contains_range(r, r)
    }

    pub(super) fn add_class(&mut self, other: &Class) {
        for &(lo, hi) in &other.ranges {
            self.add_range(lo, hi);
        }
    }

    /// Complement over `0..=RUNE_MAX` (RE2's `Negate`).
    pub(super) fn negate(&mut self) {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &(a, b) in &self.ranges {
            if next < a {
                out.push((next, a - 1));
            }
            next = b + 1;
        }
        if next <= RUNE_MAX {
            out.push((next, RUNE_MAX));
        }
        self.ranges = out;
    }

    /// Drops runes above `max` (RE2's `RemoveAbove(rune_max_)`).
    pub(super) fn remove_above(&mut self, max: u32) {
        self.ranges.retain(|&(lo, _)| lo <= max);
        if let Some(last) = self.ranges.last_mut() {
            last.1 = last.1.min(max);
        }
    }

    /// Number of runes, RE2's `size()`.
    pub(super) fn size(&self) -> u64 {
        self.ranges.iter().map(|&(a, b)| u64::from(b - a) + 1).sum()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.size() == u64::from(RUNE_MAX) + 1
    }

    /// RE2's `FoldsASCII`: the class holds an ASCII letter exactly when it holds the other
    /// case of that letter.
    pub(super) fn folds_ascii(&self) -> bool {
        (0..26).all(|i| self.contains(u32::from(b'A') + i) == self.contains(u32::from(b'a') + i))
    }

    /// RE2's `AddRangeFlags` with the parse flags Envoy uses (`ClassNL` is always set, so
    /// newlines are never cut out): adds the range, and its case variants under `(?i)`.
    pub(super) fn add_range_flags(&mut self, lo: u32, hi: u32, fold: bool) {
        if fold {
            self.add_folded_range(lo, hi);
        } else {
            self.add_range(lo, hi);
        }
    }

    /// RE2's `AddFoldedRangeLatin1`: under Latin-1, `(?i)` adds the other case of ASCII
    /// letters only (`(?i)é` does not match `É`).
    pub(super) fn add_folded_range(&mut self, lo: u32, hi: u32) {
        self.add_range(lo, hi);
        for (upper, lower) in [(0x41u32, 0x5Au32), (0x61, 0x7A)] {
            let (a, b) = (lo.max(upper), hi.min(lower));
            if a <= b {
                let shift = |r: u32| if upper == 0x41 { r + 32 } else { r - 32 };
                self.add_range(shift(a), shift(b));
            }
        }
    }
}

/// Whether `(?i)` gives the literal `r` another case under Latin-1: ASCII letters only.
pub(super) fn has_fold(r: u32) -> bool {
    (0x41..=0x5A).contains(&r) || (0x61..=0x7A).contains(&r)
}

/// The other case of an ASCII letter.
pub(super) fn other_case(r: u32) -> u32 {
    if (0x41..=0x5A).contains(&r) {
        r + 32
    } else {
        r - 32
    }
}

/// A named group of runes: Perl (`\d`), POSIX (`[:alpha:]`) or Unicode (`\pL`), given as the
/// ranges RE2 tables hold, with a sign for negated forms.
pub(super) struct Group {
    pub(super) ranges: Vec<(u32, u32)>,
    pub(super) negated: bool,
}

/// RE2's `AddUGroup`.
pub(super) fn add_group(cc: &mut Class, g: &Group, negated: bool, fold: bool) {
    if !negated {
        for &(lo, hi) in &g.ranges {
            cc.add_range_flags(lo, hi, fold);
        }
        return;
    }
    if fold {
        let mut pos = Class::new();
        for &(lo, hi) in &g.ranges {
            pos.add_range_flags(lo, hi, true);
        }
        pos.negate();
        cc.add_class(&pos);
        return;
    }
    let mut next = 0u32;
    for &(lo, hi) in &g.ranges {
        if next < lo {
            cc.add_range_flags(next, lo - 1, false);
        }
        next = hi + 1;
    }
    if next <= RUNE_MAX {
        cc.add_range_flags(next, RUNE_MAX, false);
    }
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// RE2's Perl groups `\d \s \w` and their negations (always ASCII, and `\s` has no `\v`).
pub(super) fn perl_group(c: u8) -> Option<Group> {
    let ranges = match c.to_ascii_lowercase() {
        b'd' => DIGIT,
        b's' => SPACE,
        b'w' => WORD,
        _ => return None,
    };
    Some(Group {
        ranges: ranges.to_vec(),
        negated: c.is_ascii_uppercase(),
    })
}

/// RE2's POSIX groups, `name` being the text between `[:` and `:]`.
pub(super) fn posix_group(name: &[u8]) -> Option<Group> {
    let (negated, name) = match name.strip_prefix(b"^") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let ranges: &[(u32, u32)] = match name {
        b"alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        b"alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        b"ascii" => &[(0x00, 0x7F)],
        b"blank" => &[(0x09, 0x09), (0x20, 0x20)],
        b"cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        b"digit" => DIGIT,
        b"graph" => &[(0x21, 0x7E)],
        b"lower" => &[(0x61, 0x7A)],
        b"print" => &[(0x20, 0x7E)],
        b"punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        b"space" => &[(0x09, 0x0D), (0x20, 0x20)],
        b"upper" => &[(0x41, 0x5A)],
        b"word" => WORD,
        b"xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some(Group {
        ranges: ranges.to_vec(),
        negated,
    })
}

/// The general categories RE2's Unicode tables hold (no `Cn`, no `LC`, no long names).
const CATEGORIES: &[&str] = &[
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs",
];

/// The Unicode scripts RE2's tables hold (Unicode 15.1), spelled exactly as RE2 looks them up.
const SCRIPTS: &[&str] = &[
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cypro_Minoan",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kawi",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nag_Mundari",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Old_Uyghur",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangsa",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Toto",
    "Ugaritic",
    "Vai",
    "Vithkuqi",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
];

/// The Latin-1 part of the `Latin` script; every other Latin-1 rune is `Common`, and no
/// other script has a rune at or below `\xff`.
const LATIN_SCRIPT: &[(u32, u32)] = &[
    (0x41, 0x5A),
    (0x61, 0x7A),
    (0xAA, 0xAA),
    (0xBA, 0xBA),
    (0xC0, 0xD6),
    (0xD8, 0xF6),
    (0xF8, 0xFF),
];

/// RE2's `LookupUnicodeGroup` (plus its special case `Any`), giving only the Latin-1 ranges:
/// everything above `\xff` is removed before compilation. `None` when RE2 has no such group.
pub(super) fn unicode_group(name: &str) -> Option<Group> {
    let ranges = if name == "Any" {
        vec![(0, RUNE_MAX)]
    } else if name == "Latin" {
        LATIN_SCRIPT.to_vec()
    } else if name == "Common" {
        let mut c = Class::new();
        for &(lo, hi) in LATIN_SCRIPT {
            c.add_range(lo, hi);
        }
        c.negate();
        c.remove_above(LATIN1_MAX);
        c.ranges
    } else if SCRIPTS.contains(&name) {
        Vec::new()
    } else if CATEGORIES.contains(&name) {
        category_latin1(name)
    } else {
        return None;
    };
    Some(Group {
        ranges,
        negated: false,
    })
}

/// The Latin-1 members of a general category, taken from `regex-syntax`'s Unicode tables
/// (Latin-1 assignments have not changed between Unicode versions).
fn category_latin1(name: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class as HirClass, HirKind};
    let Ok(hir) = regex_syntax::Parser::new().parse(&format!("\\p{{{name}}}")) else {
        return Vec::new();
    };
    let HirKind::Class(HirClass::Unicode(cls)) = hir.kind() else {
        return Vec::new();
    };
    cls.ranges()
        .iter()
        .map(|r| (u32::from(r.start()), u32::from(r.end())))
        .filter(|&(lo, _)| lo <= LATIN1_MAX)
        .map(|(lo, hi)| (lo, hi.min(LATIN1_MAX)))
        .collect()
}

/// Whether `regex-syntax` (the engine users often test with) knows a `\p{...}` name that
/// RE2 does not, which makes a rejection a portability problem rather than a typo.
pub(super) fn other_engines_know(name: &str) -> bool {
    regex_syntax::Parser::new()
        .parse(&format!("\\p{{{name}}}"))
        .is_ok()
}
