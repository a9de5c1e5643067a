//! Ambassador configuration compiler.
