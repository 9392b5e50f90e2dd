//! Request and response body processors (filled in below).
