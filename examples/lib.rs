//! Embedding examples for `pooler-core`; each example is a file beside this one
//! (`cargo run -p pooler-examples --example embedded`).
#![forbid(unsafe_code)]
