use super::*;

#[test]
fn placeholder_sizes() {
    for (p, want) in [("abc", 7u32), ("^abc", 4), ("^[a-z]", 3)] {
        assert_eq!(program_size(p).unwrap(), Some(want), "{p}");
    }
}
