//! Naming what differs when a plugin exports the formatter at the right
//! contract version but with other types: a WIT edited without a version
//! bump. wasmtime says only "failed to convert function to given type"; this
//! compares the plugin's `format` with a built-in's (built from the host's
//! own WIT) and names the parameter, the field and both types.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};

/// The first difference between `plugin`'s `format` (in its `export`
/// instance) and `reference`'s, as `parameter `event`: field `timestamp`:
/// the host's WIT has u64, the plugin's u32`; `None` when none is found.
pub(crate) fn describe(
    engine: &Engine,
    plugin: &Component,
    reference: &Component,
    export: &str,
) -> Option<String> {
    let want = format_func(engine, reference, export)?;
    let got = format_func(engine, plugin, export)?;
    let want_params: Vec<(String, Type)> = want.params().map(|(n, t)| (n.to_string(), t)).collect();
    let got_params: Vec<(String, Type)> = got.params().map(|(n, t)| (n.to_string(), t)).collect();
    let names = |params: &[(String, Type)]| {
        params
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if want_params.len() != got_params.len()
        || want_params.iter().zip(&got_params).any(|(w, g)| w.0 != g.0)
    {
        return Some(format!(
            "`format` takes ({}) in the host's WIT, ({}) in the plugin's",
            names(&want_params),
            names(&got_params)
        ));
    }
    for ((name, w), (_, g)) in want_params.iter().zip(&got_params) {
        if let Some(difference) = difference(w, g) {
            return Some(format!("`format` parameter `{name}`{difference}"));
        }
    }
    let (want_results, got_results): (Vec<Type>, Vec<Type>) =
        (want.results().collect(), got.results().collect());
    if want_results.len() != got_results.len() {
        return Some("`format` returns another number of results".into());
    }
    want_results
        .iter()
        .zip(&got_results)
        .find_map(|(w, g)| difference(w, g))
        .map(|difference| format!("`format` result{difference}"))
}

fn format_func(engine: &Engine, component: &Component, export: &str) -> Option<ComponentFunc> {
    let ty = component.component_type();
    let ComponentItem::ComponentInstance(instance) = ty.get_export(engine, export)?.ty else {
        return None;
    };
    match instance.get_export(engine, "format")?.ty {
        ComponentItem::ComponentFunc(func) => Some(func),
        _ => None,
    }
}

/// Where `got` first differs from `want`, as a path (`: field `x``...)
/// ending in both types; `None` when they are the same.
fn difference(want: &Type, got: &Type) -> Option<String> {
    if want == got {
        return None;
    }
    let differs = || {
        Some(format!(
            ": the host's WIT has {}, the plugin's {}",
            name(want),
            name(got)
        ))
    };
    match (want, got) {
        (Type::Record(w), Type::Record(g)) => {
            let wf: Vec<_> = w.fields().map(|f| (f.name.to_string(), f.ty)).collect();
            let gf: Vec<_> = g.fields().map(|f| (f.name.to_string(), f.ty)).collect();
            for (name, ty) in &wf {
                match gf.iter().find(|(n, _)| n == name) {
                    None => {
                        return Some(format!(": field `{name}` is missing in the plugin's WIT"));
                    }
                    Some((_, other)) => {
                        if let Some(d) = difference(ty, other) {
                            return Some(format!(": field `{name}`{d}"));
                        }
                    }
                }
            }
            if let Some((name, _)) = gf.iter().find(|(n, _)| !wf.iter().any(|(m, _)| m == n)) {
                return Some(format!(": field `{name}` is not in the host's WIT"));
            }
            let order = |f: &[(String, Type)]| {
                f.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Some(format!(
                ": fields in another order: the host's WIT has ({}), the plugin's ({})",
                order(&wf),
                order(&gf)
            ))
        }
        (Type::Enum(w), Type::Enum(g)) => {
            let (w, g): (Vec<&str>, Vec<&str>) = (w.names().collect(), g.names().collect());
            Some(format!(
                ": enum cases differ: the host's WIT has ({}), the plugin's ({})",
                w.join(", "),
                g.join(", ")
            ))
        }
        (Type::Option(w), Type::Option(g)) => {
            difference(&w.ty(), &g.ty()).map(|d| format!(" (inside option){d}"))
        }
        (Type::List(w), Type::List(g)) => {
            difference(&w.ty(), &g.ty()).map(|d| format!(" (list element){d}"))
        }
        (Type::Tuple(w), Type::Tuple(g)) => {
            let (w, g): (Vec<Type>, Vec<Type>) = (w.types().collect(), g.types().collect());
            if w.len() != g.len() {
                return differs();
            }
            w.iter()
                .zip(&g)
                .enumerate()
                .find_map(|(i, (w, g))| difference(w, g).map(|d| format!(" (tuple item {i}){d}")))
        }
        (Type::Result(w), Type::Result(g)) => match (w.ok(), g.ok(), w.err(), g.err()) {
            (Some(wo), Some(go), _, _) if wo != go => {
                difference(&wo, &go).map(|d| format!(" (ok){d}"))
            }
            (_, _, Some(we), Some(ge)) if we != ge => {
                difference(&we, &ge).map(|d| format!(" (error){d}"))
            }
            _ => differs(),
        },
        _ => differs(),
    }
}

/// A short name for a type, as WIT spells it.
fn name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", name(&l.ty())),
        Type::Option(o) => format!("option<{}>", name(&o.ty())),
        Type::Record(_) => "a record".into(),
        Type::Tuple(_) => "a tuple".into(),
        Type::Variant(_) => "a variant".into(),
        Type::Enum(_) => "an enum".into(),
        Type::Result(_) => "a result".into(),
        Type::Flags(_) => "flags".into(),
        _ => "another kind of type".into(),
    }
}
