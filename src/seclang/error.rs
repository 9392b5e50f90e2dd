//! Compile errors: always located (`file:line`), always one line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl CompileError {
    pub fn new(file: &str, line: u32, message: impl Into<String>) -> CompileError {
        CompileError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for CompileError {}
