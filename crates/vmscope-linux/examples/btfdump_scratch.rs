use vmscope_linux::{Profile, SymbolTable, SymbolSource};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let p = Profile::from_vmlinux_file(&a[1], SymbolTable::new(SymbolSource::Kallsyms)).unwrap();
    for name in &a[2..] {
        if let Some(e) = name.strip_prefix("enum:") {
            println!("{:?}", p.types().enum_containing(e).and_then(|n| p.enum_def(&n)));
            continue;
        }
        match p.struct_def(name) {
            Some(s) => {
                println!("struct {} size {}", s.name, s.size);
                for m in s.members { println!("  {:>5}.{} {:?} {:30} {}", m.bit_offset/8, m.bit_offset%8, m.bit_size, m.name, m.ty); }
            }
            None => println!("{name}: missing"),
        }
    }
}
