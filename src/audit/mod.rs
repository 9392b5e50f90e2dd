//! Audit log writer (filled in below).
