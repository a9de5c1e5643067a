//! Install manifests (filled in below).
