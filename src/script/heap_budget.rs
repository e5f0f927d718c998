//! The script's heap budget: how much the thread running a script may hold, and the standard
//! functions that would allocate past it in one step, re-registered to refuse first.
//!
//! The budget is kept two ways. The run's progress callback compares the thread's live heap
//! (`heap_meter`) with the budget between operations, which stops growth that comes a little
//! at a time (a map filled key by key). That check comes after an operation, so it cannot stop
//! one operation that allocates a great deal at once: `s.pad(2000000000, "x")`, `s += s` on a
//! string of half the budget, `[0].pad(n, 0)`. The functions that allocate by a size the
//! script picks, or by joining values, are registered here over the standard packages' (a
//! registered function wins over a package's with the same signature): each computes what it
//! is about to allocate, refuses with [`HeapExhausted`] when the live heap plus that passes the
//! budget, and otherwise does exactly what Rhai's own does (same results, same edge cases).
//! The refusal carries the position of the call, so the diagnostic points at the right line.
//!
//! Copies Rhai makes of existing values (reading a list into a second variable, string
//! interpolation) are not function calls and are only seen by the check between operations:
//! such an operation can reach the budget plus one copy of the largest value before it stops.
//!
//! It must not change what an admitted call returns, and must not allocate to find out what a
//! call would allocate.

use super::heap_meter::{allocated_size, thread_live_bytes};
use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Module, Position, INT};
use std::mem::size_of;

/// A limit on the live heap of the thread that made it.
#[derive(Clone, Copy, Debug)]
pub struct HeapBudget {
    /// The thread's live bytes at which the script has used up its budget.
    limit: isize,
    max_bytes: usize,
}

/// Why a script was stopped: its heap reached the budget (the `ErrorTerminated` token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapExhausted {
    pub budget_bytes: usize,
}

impl HeapExhausted {
    /// The budget a termination token says was used up, if it is this one.
    pub fn from_token(token: &Dynamic) -> Option<Self> {
        token.read_lock::<HeapExhausted>().map(|t| *t)
    }
}

impl HeapBudget {
    /// `max_bytes` more than the calling thread holds now: what the script will hold is
    /// counted, not what the host held before it started.
    pub fn starting_now(max_bytes: usize) -> Self {
        let limit = thread_live_bytes().saturating_add(isize::try_from(max_bytes).unwrap_or(isize::MAX));
        HeapBudget { limit, max_bytes }
    }

    /// True when the thread holds more than its budget.
    pub fn is_exceeded(&self) -> bool {
        thread_live_bytes() > self.limit
    }

    /// The token that stops the script for the budget.
    pub fn exhausted_token(&self) -> Dynamic {
        Dynamic::from(HeapExhausted { budget_bytes: self.max_bytes })
    }

    /// Refuses an allocation of `bytes` that would take the thread past its budget. The error
    /// is the one the progress callback stops a script with; Rhai gives it the call's position.
    pub fn admit(&self, bytes: usize) -> Result<(), Box<EvalAltResult>> {
        let after = thread_live_bytes().saturating_add(isize::try_from(bytes).unwrap_or(isize::MAX));
        if after > self.limit {
            Err(EvalAltResult::ErrorTerminated(self.exhausted_token(), Position::NONE).into())
        } else {
            Ok(())
        }
    }
}

/// The standard functions that allocate by a size the script picks or by joining values,
/// checking the budget before they allocate. Registered after the standard packages, so these
/// are the ones scripts call. The operators among them (`+`, `+=`) are reached only with the
/// engine's fast operators off: otherwise Rhai runs its built-in `+` on strings and lists
/// without looking for a registered one.
pub fn checked_functions(budget: HeapBudget) -> Module {
    let mut m = Module::new();
    type Res<T> = Result<T, Box<EvalAltResult>>;

    // Strings.
    m.set_native_fn("+", move |a: ImmutableString, b: ImmutableString| -> Res<ImmutableString> {
        join_strings(budget, &a, &b)
    });
    m.set_native_fn("+", move |a: ImmutableString, c: char| -> Res<ImmutableString> {
        join_strings(budget, &a, c.encode_utf8(&mut [0; 4]))
    });
    m.set_native_fn("+", move |c: char, b: ImmutableString| -> Res<ImmutableString> {
        join_strings(budget, c.encode_utf8(&mut [0; 4]), &b)
    });
    for name in ["+=", "append"] {
        m.set_native_fn(name, move |s: &mut ImmutableString, b: ImmutableString| -> Res<()> {
            append_string(budget, s, &b)
        });
    }
    m.set_native_fn("+=", move |s: &mut ImmutableString, c: char| -> Res<()> {
        append_string(budget, s, c.encode_utf8(&mut [0; 4]))
    });
    m.set_native_fn("pad", move |s: &mut ImmutableString, len: INT, c: char| -> Res<()> {
        pad_string(budget, s, len, c.encode_utf8(&mut [0; 4]))
    });
    m.set_native_fn("pad", move |s: &mut ImmutableString, len: INT, padding: ImmutableString| -> Res<()> {
        pad_string(budget, s, len, &padding)
    });
    // Every match can become a longer text (an empty `find` matches between every character).
    m.set_native_fn(
        "replace",
        move |s: &mut ImmutableString, find: ImmutableString, with: ImmutableString| -> Res<()> {
            replace_in_string(budget, s, &find, &with)
        },
    );
    m.set_native_fn("replace", move |s: &mut ImmutableString, find: ImmutableString, with: char| -> Res<()> {
        replace_in_string(budget, s, &find, with.encode_utf8(&mut [0; 4]))
    });
    m.set_native_fn("replace", move |s: &mut ImmutableString, find: char, with: ImmutableString| -> Res<()> {
        replace_in_string(budget, s, find.encode_utf8(&mut [0; 4]), &with)
    });
    m.set_native_fn("replace", move |s: &mut ImmutableString, find: char, with: char| -> Res<()> {
        replace_in_string(budget, s, find.encode_utf8(&mut [0; 4]), with.encode_utf8(&mut [0; 4]))
    });

    // Lists.
    m.set_native_fn("pad", move |list: &mut Array, len: INT, item: Dynamic| -> Res<()> {
        let Ok(len) = usize::try_from(len) else { return Ok(()) };
        if len <= list.len() {
            return Ok(());
        }
        let added = len - list.len();
        // `resize` copies the item for every new slot but the last, which takes it.
        let copies = copy_bytes(&item).saturating_mul(added - 1);
        budget.admit(list_growth_bytes(list, added).saturating_add(copies))?;
        list.resize(len, item);
        Ok(())
    });
    for name in ["+=", "append"] {
        m.set_native_fn(name, move |list: &mut Array, other: Array| -> Res<()> {
            if other.is_empty() {
                return Ok(());
            }
            if list.is_empty() {
                *list = other;
                return Ok(());
            }
            budget.admit(list_growth_bytes(list, other.len()))?;
            list.extend(other);
            Ok(())
        });
    }
    m.set_native_fn("+", move |mut list: Array, other: Array| -> Res<Array> {
        if other.is_empty() {
            return Ok(list);
        }
        if list.is_empty() {
            return Ok(other);
        }
        budget.admit(list_growth_bytes(&list, other.len()))?;
        list.extend(other);
        Ok(list)
    });
    // One more item doubles a full list's buffer: for a list of most of the budget, that
    // alone passes it.
    for name in ["push", "+="] {
        m.set_native_fn(name, move |list: &mut Array, item: Dynamic| -> Res<()> {
            budget.admit(list_growth_bytes(list, 1))?;
            list.push(item);
            Ok(())
        });
    }
    m
}

/// A string shorter than this lives inside the value (smartstring's inline form).
const INLINE_STRING_BYTES: usize = 23;
/// The smallest buffer smartstring allocates for a string that outgrows the inline form.
const MIN_STRING_BUFFER: usize = 2 * INLINE_STRING_BYTES;

/// The buffer smartstring 1.0 allocates for a string of `len` bytes made outside its inline
/// form: exactly its length, at least [`MIN_STRING_BUFFER`].
fn new_string_buffer(len: usize) -> usize {
    if len <= INLINE_STRING_BYTES {
        0
    } else {
        len.max(MIN_STRING_BUFFER)
    }
}

/// The buffer a boxed smartstring of capacity `cap` grows to so it holds `len` bytes: it
/// doubles until it fits.
fn grown_string_buffer(cap: usize, len: usize) -> usize {
    let mut grown = cap.max(1);
    while grown < len {
        grown = grown.saturating_mul(2);
    }
    grown
}

/// `a` then `b` as a new string: a buffer for `a`, then grown to hold both.
fn join_strings(budget: HeapBudget, a: &str, b: &str) -> Result<ImmutableString, Box<EvalAltResult>> {
    let len = a.len().saturating_add(b.len());
    let bytes = if a.len() <= INLINE_STRING_BYTES {
        heap_bytes(new_string_buffer(len))
    } else {
        let first = new_string_buffer(a.len());
        let grown = grown_string_buffer(first, len);
        // The first buffer is still held while the grown one is filled.
        heap_bytes(first) + if grown > first { heap_bytes(grown) } else { 0 }
    };
    budget.admit(bytes)?;
    let mut joined = ImmutableString::new();
    let text = joined.make_mut();
    text.push_str(a);
    text.push_str(b);
    Ok(joined)
}

/// Appends `b` to `s`: in place when `s` is the only holder of its text (so appending in a
/// loop is amortized, as in Rhai), else into a new string.
fn append_string(budget: HeapBudget, s: &mut ImmutableString, b: &str) -> Result<(), Box<EvalAltResult>> {
    if b.is_empty() {
        return Ok(());
    }
    let len = s.len().saturating_add(b.len());
    match s.get_mut() {
        Some(text) => {
            let bytes = if text.is_inline() {
                heap_bytes(new_string_buffer(len))
            } else {
                let grown = grown_string_buffer(text.capacity(), len);
                if grown > text.capacity() {
                    heap_bytes(grown)
                } else {
                    0
                }
            };
            budget.admit(bytes)?;
            text.push_str(b);
        }
        None => *s = join_strings(budget, s, b)?,
    }
    Ok(())
}

/// Rhai's `pad` on strings: pads with `padding` (whole, then the characters that fit) until
/// the string has `len` characters.
fn pad_string(budget: HeapBudget, s: &mut ImmutableString, len: INT, padding: &str) -> Result<(), Box<EvalAltResult>> {
    if len <= 0 {
        return Ok(());
    }
    let Ok(len) = usize::try_from(len) else {
        return Err(EvalAltResult::ErrorDataTooLarge("Length of string".into(), Position::NONE).into());
    };
    let chars = s.chars().count();
    // Rhai's own loops forever on an empty padding.
    if len <= chars || padding.is_empty() {
        return Ok(());
    }
    let missing = len - chars;
    let padding_chars = padding.chars().count();
    let whole = missing / padding_chars;
    let rest: usize = padding.chars().take(missing % padding_chars).map(char::len_utf8).sum();
    let padded_len = whole.saturating_mul(padding.len()).saturating_add(rest).saturating_add(s.len());
    // Built at its final length, then copied once into Rhai's string type.
    budget.admit(heap_bytes(padded_len).saturating_add(heap_bytes(new_string_buffer(padded_len))))?;
    let mut padded = String::with_capacity(padded_len);
    padded.push_str(s);
    for _ in 0..whole {
        padded.push_str(padding);
    }
    padded.extend(padding.chars().take(missing % padding_chars));
    *s = padded.into();
    Ok(())
}

/// Rhai's `replace` (every match of `find`, as `str::replace`), built at its final length.
fn replace_in_string(
    budget: HeapBudget,
    s: &mut ImmutableString,
    find: &str,
    with: &str,
) -> Result<(), Box<EvalAltResult>> {
    // As Rhai's: an empty string stays empty, even for an empty `find`.
    if s.is_empty() {
        return Ok(());
    }
    let matches = s.matches(find).count();
    let replaced_len = (s.len() - matches * find.len()).saturating_add(matches.saturating_mul(with.len()));
    budget.admit(heap_bytes(replaced_len).saturating_add(heap_bytes(new_string_buffer(replaced_len))))?;
    let mut replaced = String::with_capacity(replaced_len);
    let mut copied_to = 0;
    for (at, found) in s.match_indices(find) {
        replaced.push_str(&s[copied_to..at]);
        replaced.push_str(with);
        copied_to = at + found.len();
    }
    replaced.push_str(&s[copied_to..]);
    *s = replaced.into();
    Ok(())
}

/// The buffer a list allocates to take `added` more items: none while they fit, else `Vec`'s
/// amortized growth (double, or exactly enough, at least 4).
fn list_growth_bytes(list: &Array, added: usize) -> usize {
    let needed = list.len().saturating_add(added);
    if needed <= list.capacity() {
        return 0;
    }
    heap_bytes(needed.max(list.capacity().saturating_mul(2)).max(4).saturating_mul(size_of::<Dynamic>()))
}

/// What the allocator sets aside for a buffer of `len` bytes (none for none).
fn heap_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        allocated_size(len)
    }
}

/// Bytes of a B-tree node of a script map, with room for 11 keys and values and 12 edges (a
/// leaf node is smaller); every node but the root holds at least 5 entries.
const MAP_NODE_BYTES: usize = 552;

/// Heap bytes a copy of `value` allocates, at most: lists and maps are copied whole (their
/// box, their buffer, their items), strings and shared values are not (they are counted
/// references).
fn copy_bytes(value: &Dynamic) -> usize {
    if value.is_shared() {
        return 0;
    }
    if let Ok(list) = value.as_array_ref() {
        let own = heap_bytes(size_of::<Array>()).saturating_add(heap_bytes(list.len() * size_of::<Dynamic>()));
        return list.iter().fold(own, |n, v| n.saturating_add(copy_bytes(v)));
    }
    if let Ok(map) = value.as_map_ref() {
        let nodes = if map.is_empty() { 0 } else { map.len() / 5 + 1 };
        let own = heap_bytes(size_of::<rhai::Map>()).saturating_add(nodes.saturating_mul(heap_bytes(MAP_NODE_BYTES)));
        return map.iter().fold(own, |n, (k, v)| {
            n.saturating_add(heap_bytes(new_string_buffer(k.len()))).saturating_add(copy_bytes(v))
        });
    }
    if let Ok(blob) = value.as_blob_ref() {
        return heap_bytes(size_of::<rhai::Blob>()).saturating_add(heap_bytes(blob.len()));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(max_bytes: usize) -> rhai::Engine {
        crate::script::ScriptEngine::build(crate::script::EngineLimits {
            max_heap: Some(max_bytes),
            ..Default::default()
        })
    }

    fn refused(result: Result<Dynamic, Box<EvalAltResult>>) -> Option<(HeapExhausted, usize)> {
        match *result.err()? {
            EvalAltResult::ErrorTerminated(token, pos) => HeapExhausted::from_token(&token).zip(pos.line()),
            _ => None,
        }
    }

    #[test]
    fn one_call_past_the_budget_is_refused_before_it_allocates() {
        let budget = 32 << 20;
        let engine = engine(budget);
        for (script, line) in [
            ("let s = \"x\";\ns.pad(2000000000, \"x\");", 2),
            ("let s = \"x\";\ns.pad(2000000000, 'x');", 2),
            ("let a = [0];\n\na.pad(100000000, 0);", 3),
            ("let s = \"x\";\nloop {\n    s += s;\n}", 3),
            ("let s = \"x\";\nloop {\n    s = s + s;\n}", 3),
            ("let s = \"x\";\nloop {\n    s.append(s);\n}", 3),
            ("let a = [0];\nloop {\n    a += a;\n}", 3),
            ("let a = [0];\nloop {\n    a = a + a;\n}", 3),
            ("let s = \"xx\";\nloop {\n    s.replace(\"x\", s);\n}", 3),
            ("let a = [[0, 1, 2, 3]];\na.pad(10000000, [0, 1, 2, 3]);", 2),
        ] {
            let before = thread_live_bytes();
            let stopped = refused(engine.eval::<Dynamic>(script));
            assert_eq!(stopped, Some((HeapExhausted { budget_bytes: budget }, line)), "{script}");
            assert!(thread_live_bytes() - before < 4 << 20, "{script}: freed what it made");
        }
    }

    #[test]
    fn admitted_calls_return_what_rhai_returns() {
        let engine = engine(1 << 30);
        let plain = rhai::Engine::new();
        for script in [
            "let s = \"hello\"; s.pad(10, \"(!)\"); s",
            "let s = \"hello\"; s.pad(8, '*'); s.pad(3, 'x'); s",
            "let s = \"héllo\"; s.pad(9, \"ü-\"); s",
            "let s = \"abcabc\"; s.replace(\"b\", \"XYZ\"); s.replace('c', \"\"); s",
            "let s = \"abc\"; s.replace(\"\", \"-\"); s",
            "let s = \"\"; s.replace(\"\", \"-\"); s",
            "let s = \"aXbX\"; s.replace(\"X\", 'é'); s.replace('a', '€'); s.replace(\"\", '.'); s",
            "let s = \"abc\"; s.replace('b', \"\"); s",
            "let s = \"x\"; s.pad(-1, 'y'); s.pad(0, \"y\"); s",
            "let s = \"ab\"; s.pad(6, \"xyz\"); s",
            "let a = [1, 2]; a.pad(-3, 0); a.pad(1, 0); a",
            "let s = \"a\"; s += s; s += 'b'; s.append(\"c\"); s + s + 'd' + `${s}`",
            "let long = \"0123456789012345678901234567890123456789\"; let t = long; t += long; [t, long, 'z' + long]",
            "let a = [1]; a.pad(4, [2]); a += [3]; a.append([]); a += 4; a.push(5); a + a",
            "let a = []; a += [1, 2]; a + []",
        ] {
            let ours = engine.eval::<Dynamic>(script).unwrap().to_string();
            let rhai = plain.eval::<Dynamic>(script).unwrap().to_string();
            assert_eq!(ours, rhai, "{script}");
        }
    }

    #[test]
    fn padding_with_nothing_leaves_a_string_as_it_is() {
        // Rhai's own `pad` loops forever here.
        let engine = engine(1 << 30);
        assert_eq!(engine.eval::<String>("let s = \"x\"; s.pad(4, \"\"); s").unwrap(), "x");
    }

    #[test]
    fn a_copy_costs_no_more_than_its_estimate() {
        let engine = engine(1 << 30);
        for script in [
            "[1, 2, 3, 4]",
            "[[1], [2, [3]], \"a long string that is not inline\"]",
            "#{ a: 1, b: [1, 2], c: #{ d: 1 } }",
            "let m = #{}; for i in 0..100 { m[`key number ${i} of a long name`] = [i]; } m",
            "[]",
            "#{}",
        ] {
            let value = engine.eval::<Dynamic>(script).unwrap();
            let before = thread_live_bytes();
            let copy = value.clone();
            let held = (thread_live_bytes() - before) as usize;
            drop(copy);
            let estimate = copy_bytes(&value);
            assert!(
                held <= estimate && estimate <= held * 2 + 64,
                "{script}: a copy holds {held}, estimated {estimate}"
            );
        }
    }

    #[test]
    fn string_growth_matches_what_smartstring_allocates() {
        // The prediction is what a string's buffer comes to be: a change in smartstring's
        // growth shows here before it lets a call past the budget.
        for (a, b) in [(10, 5), (10, 30), (30, 1), (100, 100), (1000, 3000), (4096, 4096)] {
            let (a, b) = ("a".repeat(a), "b".repeat(b));
            let before = thread_live_bytes();
            let joined = join_strings(HeapBudget::starting_now(1 << 30), &a, &b).unwrap();
            let held = thread_live_bytes() - before;
            let len = a.len() + b.len();
            let expected = if a.len() <= INLINE_STRING_BYTES {
                new_string_buffer(len)
            } else {
                grown_string_buffer(new_string_buffer(a.len()), len)
            };
            // The string's buffer, and the reference-counted box holding it.
            let rc_box = allocated_size(40);
            assert_eq!(held as usize, heap_bytes(expected) + rc_box, "{} + {} bytes", a.len(), b.len());
            drop(joined);
        }
    }
}
