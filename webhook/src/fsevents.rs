//! Which filesystem events say that a watched file may have changed.
//!
//! inotify also reports a file being opened, read and closed without writing. The watchers
//! here read the files they watch, so taking those as changes makes each read cause another
//! (a server that rereads its whole directory without end, one core busy while idle).

use notify::event::{AccessKind, AccessMode, EventKind};

/// Whether `kind` may have changed what a file holds: anything but an access that did not
/// write (closing a file opened for writing is a change: the writer has finished).
pub fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind};

    #[test]
    fn reads_are_not_changes() {
        assert!(!may_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!may_change(&EventKind::Access(AccessKind::Read)));
        assert!(!may_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(may_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change(&EventKind::Create(CreateKind::File)));
        assert!(may_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(may_change(&EventKind::Remove(RemoveKind::File)));
        assert!(may_change(&EventKind::Any));
    }
}
