//! `dog vdi tree` (spec dog-cli.md §4.2): every VDI and its snapshots as a pstree-like
//! drawing. A VDI hangs under its parent when the parent has the same name; anything else
//! (a fresh VDI, a clone, a VDI whose parent was deleted) starts a root line with its name.
//! `--json` gives the same forest as nested objects.

use std::io::IsTerminal;

use chrono::TimeZone;

use crate::ctx::Ctx;
use crate::exit::{CmdResult, EXIT_SUCCESS};

const TEXT_BOLD: &str = "\x1b[1m";
const TEXT_NORMAL: &str = "\x1b[0m";

/// One VDI of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeVdi {
    /// Its name.
    pub name: String,
    /// `[YYYY-MM-DD HH:MM]` for a snapshot, `(you are here)` for the working VDI.
    pub label: String,
    /// Its vid.
    pub vid: u32,
    /// Its parent's vid (0: none).
    pub parent: u32,
    /// Drawn in bold (the working VDI, on a terminal).
    pub highlight: bool,
    /// A snapshot.
    pub snapshot: bool,
    /// Creation time, Unix seconds.
    pub ctime: u64,
}

/// The label of a VDI: its snapshot time, or where the user is.
pub fn label<Tz: TimeZone>(snapshot: bool, create_time: u64, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if !snapshot {
        return "(you are here)".to_string();
    }
    let secs = i64::try_from(create_time >> 32).unwrap_or(0);
    match tz.timestamp_opt(secs, 0).single() {
        Some(t) => t.format("[%Y-%m-%d %H:%M]").to_string(),
        None => "[]".to_string(),
    }
}

/// A VDI and the VDIs hanging under it.
struct Node<'a> {
    vdi: &'a TreeVdi,
    kids: Vec<Node<'a>>,
}

/// Whether `child` hangs under `parent`: its parent, with the same name.
fn hangs_under(child: &TreeVdi, parent: &TreeVdi) -> bool {
    child.parent == parent.vid && child.name == parent.name && child.vid != parent.vid
}

fn build<'a>(vdis: &'a [TreeVdi], me: &'a TreeVdi) -> Node<'a> {
    let kids = vdis
        .iter()
        .filter(|c| hangs_under(c, me))
        .map(|c| build(vdis, c))
        .collect();
    Node { vdi: me, kids }
}

/// Draws `vdis` (ascending vid) as `dog vdi tree` does.
pub fn render(vdis: &[TreeVdi]) -> String {
    let mut d = Drawing::default();
    for root in vdis
        .iter()
        .filter(|v| !vdis.iter().any(|p| hangs_under(v, p)))
    {
        d.out.push_str(&root.name);
        d.set(0, root.name.len(), false);
        d.node(&build(vdis, root), 1, true, true);
    }
    d.out
}

/// `vdis` (ascending vid) as the `--json` forest: the same roots and children as the
/// drawing.
pub fn forest(vdis: &[TreeVdi]) -> crate::json::VdiTree {
    fn convert(n: &Node<'_>) -> crate::json::TreeNode {
        let v = n.vdi;
        crate::json::TreeNode {
            name: v.name.clone(),
            vid: v.vid,
            parent_vid: v.parent,
            snapshot: v.snapshot,
            ctime: v.ctime,
            ctime_rfc3339: crate::json::rfc3339(v.ctime),
            children: n.kids.iter().map(convert).collect(),
        }
    }
    let trees = vdis
        .iter()
        .filter(|v| !vdis.iter().any(|p| hangs_under(v, p)))
        .map(|root| convert(&build(vdis, root)))
        .collect();
    crate::json::VdiTree { trees }
}

/// The drawing so far, with per level the width of the label drawn there and whether
/// siblings follow it.
#[derive(Default)]
struct Drawing {
    width: Vec<usize>,
    more: Vec<bool>,
    out: String,
}

impl Drawing {
    fn set(&mut self, level: usize, width: usize, more: bool) {
        if self.width.len() <= level {
            self.width.resize(level + 1, 0);
            self.more.resize(level + 1, false);
        }
        if let Some(w) = self.width.get_mut(level) {
            *w = width;
        }
        if let Some(m) = self.more.get_mut(level) {
            *m = more;
        }
    }

    fn indent(&mut self, level: usize, first: bool, last: bool) {
        if first {
            self.out.push_str(if last { "---" } else { "-+-" });
            return;
        }
        for lvl in 0..level.saturating_sub(1) {
            let w = self.width.get(lvl).copied().unwrap_or(0);
            self.out.push_str(&" ".repeat(w + 1));
            let more = self.more.get(lvl + 1).copied().unwrap_or(false);
            self.out.push_str(if more { "| " } else { "  " });
        }
        let w = self
            .width
            .get(level.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        self.out.push_str(&" ".repeat(w + 1));
        self.out.push_str(if last { "`-" } else { "|-" });
    }

    fn node(&mut self, n: &Node<'_>, level: usize, first: bool, last: bool) {
        self.indent(level, first, last);
        if n.vdi.highlight {
            self.out.push_str(TEXT_BOLD);
        }
        self.out.push_str(&n.vdi.label);
        if n.vdi.highlight {
            self.out.push_str(TEXT_NORMAL);
        }
        if n.kids.is_empty() {
            self.out.push('\n');
            return;
        }
        self.set(level, n.vdi.label.len(), !last);
        let count = n.kids.len();
        for (k, c) in n.kids.iter().enumerate() {
            self.node(c, level + 1, k == 0, k + 1 == count);
        }
    }
}

/// `vdi tree`.
pub async fn tree(ctx: &mut Ctx) -> CmdResult {
    let vids = match crate::vdi::live_vids(ctx).await {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let highlight = std::io::stdout().is_terminal();
    let mut vdis = Vec::new();
    for vid in vids {
        let Some(v) = crate::vdi::read_listed(ctx, vid, false).await else {
            continue;
        };
        let h = &v.hdr;
        vdis.push(TreeVdi {
            name: crate::format::text(&h.name),
            label: label(h.is_snapshot(), h.create_time, &chrono::Local),
            vid: vid.get(),
            parent: h.parent_vdi_id,
            highlight: highlight && !h.is_snapshot(),
            snapshot: h.is_snapshot(),
            ctime: h.create_time >> 32,
        });
    }
    if ctx.opts.json {
        ctx.put_json(&forest(&vdis));
    } else {
        ctx.put(&render(&vdis));
    }
    Ok(EXIT_SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, label: &str, vid: u32, parent: u32) -> TreeVdi {
        TreeVdi {
            name: name.into(),
            label: label.into(),
            vid,
            parent,
            highlight: false,
            snapshot: label.starts_with('['),
            ctime: u64::from(vid),
        }
    }

    #[test]
    fn forest_has_the_drawings_shape() {
        let f = forest(&[
            v("a", "[s1]", 1, 0),
            v("a", "[s2]", 2, 1),
            v("a", "(you are here)", 3, 2),
            v("a", "[s3]", 4, 1),
            v("b", "(you are here)", 5, 1),
        ]);
        let got = serde_json::to_value(&f).unwrap();
        let shape = |n: &serde_json::Value| -> Vec<u64> {
            n["children"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["vid"].as_u64().unwrap())
                .collect()
        };
        let trees = got["trees"].as_array().unwrap();
        assert_eq!(trees.len(), 2);
        assert_eq!(shape(&trees[0]), vec![2, 4]);
        assert_eq!(shape(&trees[0]["children"][0]), vec![3]);
        assert_eq!(trees[0]["children"][0]["children"][0]["snapshot"], false);
        assert_eq!(trees[1]["name"], "b");
        assert_eq!(trees[1]["parent_vid"], 1);
        assert_eq!(trees[1]["ctime_rfc3339"], "1970-01-01T00:00:05Z");
    }

    #[test]
    fn a_chain_is_one_line() {
        let t = render(&[
            v("test", "[2016-06-30 14:17]", 1, 0),
            v("test", "(you are here)", 2, 1),
        ]);
        assert_eq!(t, "test---[2016-06-30 14:17]---(you are here)\n");
    }

    #[test]
    fn branches_align_under_their_parent_label() {
        // s1 has two children: s2 (with the working VDI) and a rollback s3.
        let t = render(&[
            v("a", "[s1]", 1, 0),
            v("a", "[s2]", 2, 1),
            v("a", "(you are here)", 3, 2),
            v("a", "[s3]", 4, 1),
        ]);
        assert_eq!(
            t, "a---[s1]-+-[s2]---(you are here)\n         `-[s3]\n",
            "{t}"
        );
    }

    #[test]
    fn clones_and_orphans_start_roots() {
        let t = render(&[v("a", "[s1]", 1, 0), v("b", "(you are here)", 2, 1)]);
        assert_eq!(t, "a---[s1]\nb---(you are here)\n");
    }

    #[test]
    fn snapshot_label_is_local_time_in_brackets() {
        let t = (1_467_263_842u64) << 32;
        assert_eq!(label(true, t, &chrono::Utc), "[2016-06-30 05:17]");
        assert_eq!(label(false, t, &chrono::Utc), "(you are here)");
    }
}
