//! Transformations (filled in below).
