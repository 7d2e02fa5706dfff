//! The masked copy's dump filters (PostgreSQL COPY format and MySQL INSERTs): any input is
//! masked or refused with a typed error, never a panic or an endless loop.
#![no_main]
use berth_data::copy::Masker;
use berth_types::{ColumnRef, MaskRule};
use libfuzzer_sys::fuzz_target;

fn masker() -> Masker {
    let rule = |c: &str, r: MaskRule| (c.parse::<ColumnRef>().expect("a column"), r);
    Masker::new(
        b"fuzz-key",
        vec![
            rule("public.users.email", MaskRule::Email),
            rule("public.users.name", MaskRule::Name),
            rule("app.users.email", MaskRule::Email),
            rule("app.orders.note", MaskRule::Text),
        ],
        false,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, dump)) = data.split_first() else {
        return;
    };
    let m = masker();
    let mut out = Vec::new();
    let _ = if pick & 1 == 0 {
        m.mask_dump(dump, &mut out)
    } else {
        m.mask_mysql_dump("app", dump, &mut out)
    };
});
