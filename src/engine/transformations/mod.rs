//! TEMPORARY stand-in until the transformations branch lands (replaced at merge).
pub use crate::seclang::transformation::Transformation;
pub fn apply(t: Transformation, input: &[u8], out: &mut Vec<u8>) -> bool {
    match t {
        Transformation::Lowercase => {
            if input.iter().any(|b| b.is_ascii_uppercase()) {
                out.clear();
                out.extend(input.iter().map(|b| b.to_ascii_lowercase()));
                true
            } else {
                false
            }
        }
        _ => false,
    }
}
