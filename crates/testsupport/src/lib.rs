//! What the workspace's tests share, and its libraries never use (a dev-dependency only): page
//! tables that other people's crates build, each table at an address the test chooses, ready
//! to be copied into memory, so that a walker or a model can be checked against tables it did
//! not write.
//!
//! | module | tables from |
//! |---|---|
//! | [`x86`] | the `x86_64` crate: 4-level x86-64 paging (VT-d first stage, CPU), and its own walk |
//! | [`aarch64`] | the `aarch64-paging` crate: VMSAv8-64 stage 1 (EL1&0) and stage 2, 4K granule; its own walk, and the rights its flags grant |

pub mod aarch64;
pub mod x86;
