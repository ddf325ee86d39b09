//! `image-pin REFERENCE...`: judges each container image reference by the project's one pinning
//! rule ([`image_pin::problem`]) and prints one line per reference, in order:
//! `ok<TAB>REFERENCE` or `unpinned<TAB>REFERENCE<TAB>WHY`. Exit status 0 when every reference was
//! judged (pinned or not), 2 without arguments.

use std::process::ExitCode;

fn main() -> ExitCode {
    let references: Vec<String> = std::env::args().skip(1).collect();
    if references.is_empty() || references.iter().any(|r| r == "--help" || r == "-h") {
        eprintln!("usage: image-pin REFERENCE... (prints ok/unpinned per reference)");
        return ExitCode::from(2);
    }
    for reference in &references {
        match image_pin::problem(reference) {
            None => println!("ok\t{reference}"),
            Some(why) => println!("unpinned\t{reference}\t{why}"),
        }
    }
    ExitCode::SUCCESS
}
