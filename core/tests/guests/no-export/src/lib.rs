//! A test guest that is a valid component but not a plugin: it exports a
//! `run` function and no `statushook:plugin/formatter`. The host must refuse
//! it with an error that says what is missing.

wit_bindgen::generate!({
    inline: "package other:thing@1.0.0;

world nothing {
    export run: func() -> u32;
}",
});

/// The component: one export that is not the formatter.
struct Nothing;

impl Guest for Nothing {
    fn run() -> u32 {
        42
    }
}

export!(Nothing);
