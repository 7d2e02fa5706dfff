//! The stage graph: which stages a target needs, in build order.

use crate::error::{Error, Result};
use crate::model::*;
use crate::span::{Location, Span};

impl Dockerfile {
    /// The index of the stage called `name` (case-insensitive) or numbered `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|&i| i < self.stages.len())
            })
    }

    /// The stages `stage` depends on directly (its base, `COPY --from`, `RUN --mount=from=`,
    /// each with the span of the instruction that creates the edge), in first-use order.
    pub fn dependencies(&self, stage: usize) -> Vec<(usize, Span)> {
        let mut deps: Vec<(usize, Span)> = Vec::new();
        let mut add = |i: usize, span: Span| {
            if !deps.iter().any(|(d, _)| *d == i) {
                deps.push((i, span));
            }
        };
        let Some(s) = self.stages.get(stage) else {
            return deps;
        };
        if let BaseRef::Stage(i) = s.base {
            add(i, s.span);
        }
        for ins in &s.instructions {
            match ins {
                Instruction::Copy { span, copy } => {
                    if let Some(FromRef::Stage(i)) = copy.from {
                        add(i, *span);
                    }
                }
                Instruction::Run { span, run } => {
                    for m in &run.mounts {
                        if let Some(FromRef::Stage(i)) = m.from {
                            add(i, *span);
                        }
                    }
                }
                _ => {}
            }
        }
        deps
    }

    /// The stages needed to build `target` (default: the last stage), dependencies first and
    /// `target` last. Stages the target does not need are left out.
    pub fn build_order(&self, target: Option<&str>) -> Result<Vec<usize>> {
        let target = match target {
            None => self.stages.len().saturating_sub(1),
            Some(t) => self.stage_index(t).ok_or_else(|| Error::UnknownTarget {
                target: t.to_owned(),
                file: self.file_name.clone(),
                available: self
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| s.name.clone().unwrap_or_else(|| i.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        };
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; self.stages.len()];
        let mut order = Vec::new();
        // Iterative DFS so a long chain of stages cannot overflow the stack.
        let mut stack: Vec<(usize, usize)> = vec![(target, 0)];
        marks[target] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = self.dependencies(node);
            if let Some(&(dep, span)) = deps.get(*next) {
                *next += 1;
                match marks[dep] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[dep] = Mark::Active;
                        stack.push((dep, 0));
                    }
                    Mark::Active => {
                        let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut names: Vec<String> =
                            stack[start..].iter().map(|(n, _)| self.label(*n)).collect();
                        names.push(self.label(dep));
                        return Err(Error::StageCycle {
                            cycle: names.join(" -> "),
                            location: Location::new(&self.file_name, span),
                        });
                    }
                }
            } else {
                marks[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
        Ok(order)
    }

    fn label(&self, i: usize) -> String {
        self.stages[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage {i}"))
    }
}
