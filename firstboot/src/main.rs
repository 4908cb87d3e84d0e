//! `piimg-firstboot`: entry point only; the work lives in the library.

fn main() {
    eprintln!("piimg-firstboot: not implemented yet");
    std::process::exit(2);
}
