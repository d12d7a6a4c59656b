//! Pipeline and process configuration (placeholder).
