//! The built-in synthetic GSM8K-style task: short multi-step integer word problems, generated from
//! a seed, with worked solutions that end in `#### N`, for the project's tiny models.
//!
//! ```text
//! question: Tom has 3 apples. He buys 4 more. He gives away 2. How many apples does Tom have?
//! solution: 3 + 4 = 7. 7 - 2 = 5. #### 5
//! ```
//!
//! Questions are at most 68 characters at `easy` and 152 at `expert`, solutions at most 70.
//! The text is built from a small fixed set of fragments (names, items, one sentence per operation,
//! digits and ` + - * / = . #`), so a character-level tokenizer covers it: [`vocabulary`] lists
//! every character the generator can emit.
//!
//! # Levels
//!
//! | level | steps | operations | start | amounts | factors, divisors |
//! |---|---|---|---|---|---|
//! | `easy` | 1 | + - | 2..=9 | 1..=9 | |
//! | `medium` | 2 | + - | 2..=20 | 1..=20 | |
//! | `hard` | 3 | + - * | 2..=30 | 1..=30 | 2..=4 |
//! | `expert` | 4 | + - * / | 2..=50 | 1..=50 | 2..=5 |
//!
//! Sentences: `He buys / finds / gets {b} more.`, `He gives away / loses / sells {b}.`,
//! `He multiplies them by {k}.`, `He keeps 1/{k} of them.`
//!
//! Every intermediate value stays in `1..=`[`MAX_VALUE`]; a division is only drawn when it is
//! exact. At each step the operation is drawn uniformly from those of the level that are possible
//! from the current value (a level always has `+` and `-`, one of which is always possible).
//!
//! # Splits
//!
//! A problem's split is a property of its question text, not of the seed: the question is hashed
//! ([`question_hash`], FNV-1a then SplitMix64's finalizer) and the problem is a test problem when
//! `hash % SPLIT_MODULUS < TEST_RESIDUES` (one in five), a train problem otherwise. A test
//! question therefore never appears in any train set, for any seed or level mix. Each split is
//! drawn from its own stream (`CounterRng::new(counter_hash(seed, split index))`), rejecting
//! problems of the other split and duplicates, so both splits are free of duplicates and the
//! first `n` problems of a split do not depend on the split's requested size.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::named::named_enum;
use crate::rng::{CounterRng, counter_hash, mix64};

use super::dataset::PromptTemplate;
use super::error::TaskError;
use super::gsm8k_reward::ANSWER_MARKER;
use super::problem::Problem;

/// verl `data_source` of the synthetic task.
pub const SYNTHETIC_SOURCE: &str = "aqn/synthetic-arithmetic";
/// No intermediate or final value exceeds this.
pub const MAX_VALUE: u32 = 999;
/// No intermediate or final value is below this (every count is positive).
pub const MIN_VALUE: u32 = 1;
/// The smallest start value (so that the first sentence never reads "has 1 apples").
pub const MIN_START: u32 = 2;
/// The number of hash classes of the split rule.
pub const SPLIT_MODULUS: u64 = 5;
/// Hash classes `0..TEST_RESIDUES` are test problems (one in five).
pub const TEST_RESIDUES: u64 = 1;
/// The generator gives up after this many draws per requested problem (plus
/// [`MIN_DRAW_BUDGET`]) when the level mix has too few distinct problems.
pub const DRAWS_PER_PROBLEM: u64 = 50;
/// The smallest draw budget of a split.
pub const MIN_DRAW_BUDGET: u64 = 10_000;
/// Default number of train problems.
pub const DEFAULT_TRAIN_SIZE: usize = 4096;
/// Default number of test problems.
pub const DEFAULT_TEST_SIZE: usize = 512;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

named_enum! {
    /// A difficulty level of the synthetic task.
    Difficulty, "difficulty", TaskError {
        /// 1 step, + and -, numbers 1..=9.
        Easy => "easy" | "1",
        /// 2 steps, + and -, numbers 1..=20.
        Medium => "medium" | "2",
        /// 3 steps, + - *, numbers 1..=30, factors 2..=4.
        Hard => "hard" | "3",
        /// 4 steps, + - * /, numbers 1..=50, factors and divisors 2..=5.
        Expert => "expert" | "4",
    }
}

named_enum! {
    /// A split of a data set.
    Split, "split", TaskError {
        /// The training problems.
        Train => "train",
        /// The held-out problems.
        Test => "test" | "val" | "validation",
    }
}

/// An arithmetic operation of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `x + b`.
    Add,
    /// `x - b`.
    Sub,
    /// `x * k`.
    Mul,
    /// `x / k` (exact).
    Div,
}

impl Op {
    /// The operator's symbol in the worked solution.
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    /// The sentences of this operation: `pronoun + " " + before + operand + after`.
    fn sentences(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Op::Add => &[
                ("buys ", " more."),
                ("finds ", " more."),
                ("gets ", " more."),
            ],
            Op::Sub => &[("gives away ", "."), ("loses ", "."), ("sells ", ".")],
            Op::Mul => &[("multiplies them by ", ".")],
            Op::Div => &[("keeps 1/", " of them.")],
        }
    }
}

/// The parameters of a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelSpec {
    /// Number of operations.
    pub steps: usize,
    /// The operations that may be drawn (always including `Add` and `Sub`).
    pub ops: &'static [Op],
    /// The start value is drawn from `MIN_START..=max_start`.
    pub max_start: u32,
    /// Added or subtracted amounts are drawn from `1..=max_operand`.
    pub max_operand: u32,
    /// Factors and divisors are drawn from `2..=max_factor`.
    pub max_factor: u32,
}

impl Difficulty {
    /// This level's parameters (the table of the module docs).
    pub fn spec(self) -> LevelSpec {
        match self {
            Difficulty::Easy => LevelSpec {
                steps: 1,
                ops: &[Op::Add, Op::Sub],
                max_start: 9,
                max_operand: 9,
                max_factor: 1,
            },
            Difficulty::Medium => LevelSpec {
                steps: 2,
                ops: &[Op::Add, Op::Sub],
                max_start: 20,
                max_operand: 20,
                max_factor: 1,
            },
            Difficulty::Hard => LevelSpec {
                steps: 3,
                ops: &[Op::Add, Op::Sub, Op::Mul],
                max_start: 30,
                max_operand: 30,
                max_factor: 4,
            },
            Difficulty::Expert => LevelSpec {
                steps: 4,
                ops: &[Op::Add, Op::Sub, Op::Mul, Op::Div],
                max_start: 50,
                max_operand: 50,
                max_factor: 5,
            },
        }
    }
}

/// The people of the problems: name and pronoun.
const NAMES: &[(&str, &str)] = &[
    ("Tom", "He"),
    ("Sam", "He"),
    ("Ben", "He"),
    ("Max", "He"),
    ("Ann", "She"),
    ("Mia", "She"),
    ("Eva", "She"),
    ("Zoe", "She"),
];

/// The things they count (plural).
const ITEMS: &[&str] = &[
    "apples", "pens", "cards", "coins", "books", "eggs", "shells", "stamps", "cookies", "marbles",
];

/// `"{name} has {start} {items}."`
const START_HAS: &str = " has ";
/// `"How many {items} does {name} have?"`
const QUESTION_PARTS: (&str, &str, &str) = ("How many ", " does ", " have?");
/// The characters of the worked solutions besides digits: `"3 + 4 = 7. #### 7"`.
const SOLUTION_SYMBOLS: &str = " +-*/=.";

/// One step of a generated problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The operation.
    pub op: Op,
    /// Its operand (amount, factor or divisor).
    pub operand: u32,
    /// The value before the step.
    pub before: u32,
    /// The value after it.
    pub after: u32,
}

/// A generated problem with its structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticProblem {
    /// The level it was drawn at.
    pub level: Difficulty,
    /// The word problem.
    pub question: String,
    /// The worked solution, one `a op b = c.` per step, then `#### N`.
    pub solution: String,
    /// The final value.
    pub answer: u32,
    /// The steps.
    pub steps: Vec<Step>,
}

impl SyntheticProblem {
    /// The problem as the trainer sees it, with the prompt built by `template`.
    pub fn to_problem(&self, template: PromptTemplate) -> Problem {
        Problem {
            prompt: template.apply(&self.question),
            answer: self.answer.to_string(),
            source: SYNTHETIC_SOURCE.to_string(),
            solution: Some(self.solution.clone()),
        }
    }
}

/// A uniform draw from `lo..=hi` (`lo <= hi`).
fn draw_in(rng: &mut CounterRng, lo: u32, hi: u32) -> u32 {
    lo + rng.below(u64::from(hi - lo + 1)) as u32
}

/// The operand range of `op` from value `x`, or `None` when the step is impossible there.
/// For `Div` the candidates are the exact divisors.
fn operand_choices(op: Op, x: u32, spec: &LevelSpec) -> Option<Vec<u32>> {
    let range = |lo: u32, hi: u32| (lo <= hi).then(|| (lo..=hi).collect::<Vec<u32>>());
    match op {
        Op::Add => range(1, spec.max_operand.min(MAX_VALUE - x)),
        Op::Sub => range(1, spec.max_operand.min(x - MIN_VALUE)),
        Op::Mul => range(2, spec.max_factor.min(MAX_VALUE / x)),
        Op::Div => {
            let divisors: Vec<u32> = (2..=spec.max_factor)
                .filter(|k| x.is_multiple_of(*k))
                .collect();
            (!divisors.is_empty()).then_some(divisors)
        }
    }
}

/// Draws one problem of `level` from `rng`.
pub fn generate_problem(rng: &mut CounterRng, level: Difficulty) -> SyntheticProblem {
    let spec = level.spec();
    let (name, pronoun) = NAMES[rng.below(NAMES.len() as u64) as usize];
    let items = ITEMS[rng.below(ITEMS.len() as u64) as usize];
    let mut x = draw_in(rng, MIN_START, spec.max_start);
    let mut question = format!("{name}{START_HAS}{x} {items}.");
    let mut solution = String::new();
    let mut steps = Vec::with_capacity(spec.steps);
    for _ in 0..spec.steps {
        let possible: Vec<(Op, Vec<u32>)> = spec
            .ops
            .iter()
            .filter_map(|&op| operand_choices(op, x, &spec).map(|c| (op, c)))
            .collect();
        // `+` is possible below MAX_VALUE and `-` above MIN_VALUE, and every level has both.
        debug_assert!(!possible.is_empty());
        let Some((op, choices)) = possible.get(rng.below(possible.len().max(1) as u64) as usize)
        else {
            break;
        };
        let operand = choices[rng.below(choices.len() as u64) as usize];
        let after = match op {
            Op::Add => x + operand,
            Op::Sub => x - operand,
            Op::Mul => x * operand,
            Op::Div => x / operand,
        };
        let sentences = op.sentences();
        let (before_text, after_text) = sentences[rng.below(sentences.len() as u64) as usize];
        question.push_str(&format!(" {pronoun} {before_text}{operand}{after_text}"));
        solution.push_str(&format!("{x} {} {operand} = {after}. ", op.symbol()));
        steps.push(Step {
            op: *op,
            operand,
            before: x,
            after,
        });
        x = after;
    }
    let (q0, q1, q2) = QUESTION_PARTS;
    question.push_str(&format!(" {q0}{items}{q1}{name}{q2}"));
    solution.push_str(&format!("{ANSWER_MARKER}{x}"));
    SyntheticProblem {
        level,
        question,
        solution,
        answer: x,
        steps,
    }
}

/// The plain-sentence ending of a worked solution, `The answer is N.`, that the built-in tiny
/// model's pretraining mixes with the `#### N` ending (docs/spec.md's strict GSM8K reward accepts only
/// the latter; verl's flexible extraction, the last number, accepts both).
pub const PLAIN_ANSWER: (&str, &str) = ("The answer is ", ".");

/// The solution with its `#### N` ending replaced by [`PLAIN_ANSWER`].
pub fn with_plain_answer(solution: &str) -> String {
    match solution.rsplit_once(ANSWER_MARKER) {
        Some((work, n)) => format!("{work}{}{n}{}", PLAIN_ANSWER.0, PLAIN_ANSWER.1),
        None => solution.to_string(),
    }
}

/// The index of the question's person in the name list (`None` for a question that does not
/// start with one of them).
pub fn person_index(question: &str) -> Option<usize> {
    let first = question.split_whitespace().next()?;
    NAMES.iter().position(|(name, _)| *name == first)
}

/// The split hash of a question: FNV-1a over its UTF-8 bytes, then SplitMix64's finalizer.
pub fn question_hash(question: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in question.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
}

/// The split a question belongs to (see the module docs).
pub fn split_of(question: &str) -> Split {
    if question_hash(question) % SPLIT_MODULUS < TEST_RESIDUES {
        Split::Test
    } else {
        Split::Train
    }
}

/// Every character the generator can emit, sorted, with the given prompt template's characters
/// (questions, solutions and prompts are all covered).
pub fn vocabulary(template: PromptTemplate) -> Vec<char> {
    let mut text = String::from("0123456789");
    text.push_str(SOLUTION_SYMBOLS);
    text.push_str(ANSWER_MARKER);
    text.push_str(PLAIN_ANSWER.0);
    text.push_str(PLAIN_ANSWER.1);
    text.push_str(START_HAS);
    let (q0, q1, q2) = QUESTION_PARTS;
    text.push_str(&format!("{q0}{q1}{q2}"));
    for (name, pronoun) in NAMES {
        text.push_str(name);
        text.push_str(pronoun);
    }
    for items in ITEMS {
        text.push_str(items);
    }
    for op in [Op::Add, Op::Sub, Op::Mul, Op::Div] {
        for (a, b) in op.sentences() {
            text.push_str(a);
            text.push_str(b);
        }
    }
    text.push_str(&template.apply(""));
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    chars
}

/// The synthetic task's settings (TOML: `[task.synthetic]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// The seed of both splits' streams.
    pub seed: u64,
    /// The levels; each problem's level is drawn uniformly from this list (repeat a level to
    /// weight it). Default: all four.
    pub levels: Vec<Difficulty>,
    /// Number of train problems (>= 1).
    pub train_size: usize,
    /// Number of test problems (>= 1).
    pub test_size: usize,
    /// How a question becomes the prompt (default `gsm8k`).
    pub prompt_template: PromptTemplate,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            levels: Difficulty::ALL.to_vec(),
            train_size: DEFAULT_TRAIN_SIZE,
            test_size: DEFAULT_TEST_SIZE,
            prompt_template: PromptTemplate::Gsm8k,
        }
    }
}

impl SyntheticConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.levels.is_empty() {
            return Err(TaskError::InvalidSetting {
                name: "levels",
                value: "[]".into(),
                requirement: format!("name at least one of: {}", Difficulty::valid_names()),
            });
        }
        for (name, size) in [
            ("train_size", self.train_size),
            ("test_size", self.test_size),
        ] {
            if size == 0 {
                return Err(TaskError::InvalidSetting {
                    name,
                    value: "0".into(),
                    requirement: "it must be at least 1".into(),
                });
            }
        }
        Ok(())
    }

    fn levels_text(&self) -> String {
        let names: Vec<&str> = self.levels.iter().map(|l| l.name()).collect();
        names.join(", ")
    }

    /// The problems of `split` with their structure.
    pub fn generate(&self, split: Split) -> Result<Vec<SyntheticProblem>, TaskError> {
        self.validate()?;
        let (wanted, stream) = match split {
            Split::Train => (self.train_size, 0),
            Split::Test => (self.test_size, 1),
        };
        let mut rng = CounterRng::new(counter_hash(self.seed, stream));
        let budget = (wanted as u64)
            .saturating_mul(DRAWS_PER_PROBLEM)
            .max(MIN_DRAW_BUDGET);
        let mut seen = HashSet::with_capacity(wanted);
        let mut out = Vec::with_capacity(wanted);
        let mut draws = 0u64;
        while out.len() < wanted {
            if draws == budget {
                return Err(TaskError::NotEnoughProblems {
                    split: split.name(),
                    wanted,
                    found: out.len(),
                    attempts: draws,
                    levels: self.levels_text(),
                });
            }
            draws += 1;
            let level = self.levels[rng.below(self.levels.len() as u64) as usize];
            let p = generate_problem(&mut rng, level);
            if split_of(&p.question) == split && seen.insert(p.question.clone()) {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The problems of `split`, as the trainer sees them.
    pub fn problems(&self, split: Split) -> Result<Vec<Problem>, TaskError> {
        Ok(self
            .generate(split)?
            .iter()
            .map(|p| p.to_problem(self.prompt_template))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(levels: Vec<Difficulty>, train: usize, test: usize) -> SyntheticConfig {
        SyntheticConfig {
            seed: 7,
            levels,
            train_size: train,
            test_size: test,
            prompt_template: PromptTemplate::Question,
        }
    }

    /// Re-evaluates a worked solution: every `a op b = c.` holds and chains, `#### N` is last.
    fn check_solution(p: &SyntheticProblem) {
        let (steps, last) = p.solution.rsplit_once(ANSWER_MARKER).unwrap();
        assert_eq!(last, p.answer.to_string());
        let mut prev: Option<u32> = None;
        let mut count = 0;
        for eq in steps.split(". ").filter(|s| !s.trim().is_empty()) {
            let t: Vec<&str> = eq.trim().trim_end_matches('.').split(' ').collect();
            assert_eq!(t.len(), 5, "{eq}");
            let (a, b, c): (u32, u32, u32) = (
                t[0].parse().unwrap(),
                t[2].parse().unwrap(),
                t[4].parse().unwrap(),
            );
            let want = match t[1] {
                "+" => a + b,
                "-" => a - b,
                "*" => a * b,
                "/" => {
                    assert_eq!(a % b, 0, "inexact division in {eq}");
                    a / b
                }
                op => panic!("unknown op {op}"),
            };
            assert_eq!(c, want, "{eq}");
            if let Some(p) = prev {
                assert_eq!(a, p, "steps do not chain: {}", steps);
            }
            assert!((MIN_VALUE..=MAX_VALUE).contains(&c));
            prev = Some(c);
            count += 1;
        }
        assert_eq!(count, p.level.spec().steps);
        assert_eq!(prev, Some(p.answer));
    }

    #[test]
    fn example_texts_are_short_and_correct() {
        let mut rng = CounterRng::new(1);
        for level in Difficulty::ALL {
            let spec = level.spec();
            assert!(spec.ops.contains(&Op::Add) && spec.ops.contains(&Op::Sub));
            let mut max_q = 0;
            let mut max_s = 0;
            for _ in 0..2000 {
                let p = generate_problem(&mut rng, *level);
                check_solution(&p);
                assert_eq!(p.steps.len(), spec.steps);
                for s in &p.steps {
                    assert!(spec.ops.contains(&s.op));
                }
                assert!(p.question.starts_with(|c: char| c.is_ascii_uppercase()));
                assert!(p.question.ends_with(" have?"));
                max_q = max_q.max(p.question.len());
                max_s = max_s.max(p.solution.len());
            }
            // Short texts for tiny models (measured: questions up to 68 / 89 / 129 / 152
            // characters from easy to expert, solutions up to 19 / 35 / 54 / 70).
            assert!(max_q <= 155, "{level}: question of {max_q} chars");
            assert!(max_s <= 80, "{level}: solution of {max_s} chars");
        }
        let mut rng = CounterRng::new(3);
        let p = generate_problem(&mut rng, Difficulty::Easy);
        let q = &p.question;
        // One start sentence, one step, one question.
        assert_eq!(q.matches('.').count(), 2, "{q}");
        assert_eq!(p.solution.matches('=').count(), 1);
    }

    #[test]
    fn deterministic_from_the_seed_and_prefix_stable() {
        let a = small(Difficulty::ALL.to_vec(), 300, 50);
        assert_eq!(
            a.generate(Split::Train).unwrap(),
            a.generate(Split::Train).unwrap()
        );
        let b = SyntheticConfig {
            train_size: 100,
            ..a.clone()
        };
        assert_eq!(
            b.generate(Split::Train).unwrap()[..],
            a.generate(Split::Train).unwrap()[..100]
        );
        let c = SyntheticConfig {
            seed: 8,
            ..a.clone()
        };
        assert_ne!(
            c.generate(Split::Train).unwrap(),
            a.generate(Split::Train).unwrap()
        );
    }

    #[test]
    fn splits_are_disjoint_duplicate_free_and_seed_independent() {
        let cfg = small(Difficulty::ALL.to_vec(), 3000, 600);
        let train = cfg.generate(Split::Train).unwrap();
        let test = cfg.generate(Split::Test).unwrap();
        assert_eq!(train.len(), 3000);
        assert_eq!(test.len(), 600);
        let train_q: HashSet<&str> = train.iter().map(|p| p.question.as_str()).collect();
        let test_q: HashSet<&str> = test.iter().map(|p| p.question.as_str()).collect();
        assert_eq!(train_q.len(), train.len());
        assert_eq!(test_q.len(), test.len());
        assert!(train_q.is_disjoint(&test_q));
        // Another seed's train set never holds this seed's test questions.
        let other = SyntheticConfig {
            seed: 99,
            ..cfg.clone()
        }
        .generate(Split::Train)
        .unwrap();
        assert!(other.iter().all(|p| !test_q.contains(p.question.as_str())));
        // Every level appears.
        for level in Difficulty::ALL {
            assert!(train.iter().any(|p| p.level == *level));
        }
        // The split rule sends about one in five questions to test.
        let mut rng = CounterRng::new(5);
        let n = 20_000;
        let tests = (0..n)
            .filter(|_| {
                split_of(&generate_problem(&mut rng, Difficulty::Expert).question) == Split::Test
            })
            .count();
        let frac = tests as f64 / n as f64;
        assert!((frac - 0.2).abs() < 0.015, "test fraction {frac}");
    }

    #[test]
    fn vocabulary_covers_exactly_what_is_emitted() {
        for template in [PromptTemplate::Gsm8k, PromptTemplate::Question] {
            let vocab = vocabulary(template);
            let cfg = SyntheticConfig {
                prompt_template: template,
                ..small(Difficulty::ALL.to_vec(), 2000, 200)
            };
            let mut used = HashSet::new();
            for p in cfg.problems(Split::Train).unwrap() {
                let s = p.solution.unwrap();
                for c in p.prompt.chars().chain(s.chars()) {
                    assert!(
                        vocab.binary_search(&c).is_ok(),
                        "{c:?} not in the vocabulary"
                    );
                    used.insert(c);
                }
            }
            // Nothing in the vocabulary is dead weight.
            let unused: Vec<&char> = vocab.iter().filter(|c| !used.contains(c)).collect();
            assert!(unused.is_empty(), "never emitted: {unused:?}");
        }
        assert!(vocabulary(PromptTemplate::Question).len() < 60);
    }

    #[test]
    fn problems_carry_answer_and_source() {
        let cfg = SyntheticConfig {
            prompt_template: PromptTemplate::Gsm8k,
            ..small(vec![Difficulty::Easy], 5, 5)
        };
        for p in cfg.problems(Split::Test).unwrap() {
            assert!(p.prompt.ends_with("after \"####\"."));
            assert_eq!(p.source, SYNTHETIC_SOURCE);
            let s = p.solution.as_deref().unwrap();
            assert!(s.ends_with(&format!("#### {}", p.answer)));
            assert_eq!(
                crate::task::gsm8k_reward::compute_gsm8k_score(
                    s,
                    &p.answer,
                    crate::task::gsm8k_reward::ExtractMethod::Strict,
                    0.0,
                    1.0
                ),
                1.0
            );
        }
    }

    /// The generator's output is part of the task's definition (the splits, the data a model was
    /// trained on): these pinned problems change only with a deliberate format change.
    #[test]
    fn pinned_problems_of_the_default_seed() {
        let cfg = SyntheticConfig {
            train_size: 3,
            test_size: 2,
            ..SyntheticConfig::default()
        };
        let train = cfg.generate(Split::Train).unwrap();
        assert_eq!(train[0].level, Difficulty::Hard);
        assert_eq!(
            train[0].question,
            "Mia has 21 coins. She multiplies them by 2. She finds 12 more. She gives away 4. \
             How many coins does Mia have?"
        );
        assert_eq!(
            train[0].solution,
            "21 * 2 = 42. 42 + 12 = 54. 54 - 4 = 50. #### 50"
        );
        assert_eq!(
            train[2].question,
            "Max has 4 books. He buys 3 more. How many books does Max have?"
        );
        let test = cfg.generate(Split::Test).unwrap();
        assert_eq!(
            test[1].question,
            "Ben has 25 cookies. He multiplies them by 3. He gets 21 more. He keeps 1/3 of them. \
             He gets 9 more. How many cookies does Ben have?"
        );
        assert_eq!(
            test[1].solution,
            "25 * 3 = 75. 75 + 21 = 96. 96 / 3 = 32. 32 + 9 = 41. #### 41"
        );
        assert_eq!(test[1].answer, 41);
    }

    #[test]
    fn refusals() {
        let e = small(vec![], 1, 1).validate().unwrap_err().to_string();
        assert!(e.contains("easy, medium, hard, expert"), "{e}");
        let e = small(vec![Difficulty::Easy], 0, 1)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("train_size = 0"), "{e}");
        // The easy level has a few thousand distinct test questions; asking for far more fails
        // with a clear error instead of looping.
        let e = small(vec![Difficulty::Easy], 1, 10_000)
            .generate(Split::Test)
            .unwrap_err()
            .to_string();
        assert!(e.contains("distinct test problems"), "{e}");
        let e = "extreme".parse::<Difficulty>().unwrap_err().to_string();
        assert!(e.contains("easy, medium, hard, expert"), "{e}");
        let cfg: SyntheticConfig =
            serde_json::from_str(r#"{"levels": ["easy", "hard"], "train_size": 3}"#).unwrap();
        assert_eq!(cfg.levels, vec![Difficulty::Easy, Difficulty::Hard]);
        assert!(serde_json::from_str::<SyntheticConfig>(r#"{"level": ["easy"]}"#).is_err());
    }
}
