//! One module per command: each wires the libraries to the command line and prints the result.

pub mod add_tag;
pub mod bundle;
pub mod check;
pub mod committer;
pub mod copy;
pub mod discover;
pub mod manual;
pub mod plan;
pub mod producer;
pub mod run;
pub mod sort;
pub mod status;
pub mod tags;
pub mod validate;
pub mod worker;
