//! Static security checks of a Dockerfile: every image it builds (the final stage and any other
//! target) runs as a non-root user, no secret-looking value is baked into `ENV` or `ARG`, and
//! every base image is pinned (by [`image_pin`]'s rule: a version tag, a commit SHA or a digest).
//!
//! The parser knows what the checks need: comments and parser directives, line continuations,
//! stages (`FROM image [AS name]`) and the instructions of each.

/// One instruction: its keyword (upper case), its arguments and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the keyword.
    pub line: usize,
    /// `FROM`, `RUN`, `USER`, … in upper case.
    pub keyword: String,
    /// Everything after the keyword, continuation lines joined with a space.
    pub args: String,
}

/// A build stage: its `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `FROM` instruction.
    pub from: Instruction,
    /// The image reference after `FROM` (flags removed).
    pub image: String,
    /// The `AS` name, lower case.
    pub name: Option<String>,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerfile {
    /// Instructions before the first `FROM` (global `ARG`s).
    pub global: Vec<Instruction>,
    /// The stages in order; the last one is the image.
    pub stages: Vec<Stage>,
}

/// Splits `text` into instructions and stages.
pub fn parse(text: &str) -> Dockerfile {
    let mut file = Dockerfile::default();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        // Comments (and parser directives) are whole lines; inside a continued instruction they
        // are skipped too.
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (continues, content) = match trimmed.strip_suffix('\\') {
            Some(head) => (true, head.trim_end()),
            None => (false, trimmed),
        };
        let (line, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        if !joined.is_empty() && !content.is_empty() {
            joined.push(' ');
        }
        joined.push_str(content);
        if continues {
            pending = Some((line, joined));
        } else if !joined.is_empty() {
            push_instruction(&mut file, line, &joined);
        }
    }
    if let Some((line, joined)) = pending {
        push_instruction(&mut file, line, &joined);
    }
    file
}

fn push_instruction(file: &mut Dockerfile, line: usize, text: &str) {
    let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let instruction = Instruction {
        line,
        keyword: keyword.to_ascii_uppercase(),
        args: args.trim().to_owned(),
    };
    if instruction.keyword == "FROM" {
        let words: Vec<&str> = instruction
            .args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let image = words.first().copied().unwrap_or_default().to_owned();
        let name = match words.as_slice() {
            [_, as_word, name, ..] if as_word.eq_ignore_ascii_case("as") => {
                Some(name.to_ascii_lowercase())
            }
            _ => None,
        };
        file.stages.push(Stage {
            from: instruction,
            image,
            name,
            instructions: Vec::new(),
        });
    } else if let Some(stage) = file.stages.last_mut() {
        stage.instructions.push(instruction);
    } else {
        file.global.push(instruction);
    }
}

/// Words in a variable name that mark it as holding a secret.
const SECRET_WORDS: [&str; 9] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "ACCESS_KEY",
];

/// Whether a variable called `name` would hold a secret (a `*_FILE` or `*_PATH` variable names
/// where one is, which is fine).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if upper.ends_with("_FILE") || upper.ends_with("_PATH") || upper.ends_with("_DIR") {
        return false;
    }
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Every problem of `text`, one line each, prefixed with `what:LINE:`.
pub fn check(what: &str, text: &str) -> Vec<String> {
    let file = parse(text);
    let mut problems = Vec::new();
    let mut say = |line: usize, message: String| problems.push(format!("{what}:{line}: {message}"));
    if file.stages.is_empty() {
        say(1, "no FROM: not a Dockerfile".to_owned());
        return problems;
    }

    // 1. Base images pinned.
    let mut stage_names: Vec<&str> = Vec::new();
    for stage in &file.stages {
        let image = stage.image.to_ascii_lowercase();
        if !(stage_names.contains(&image.as_str()) || image == "scratch") {
            if let Err(why) = pinned(&stage.image, &file.global) {
                say(
                    stage.from.line,
                    format!("base image {:?} {why}", stage.image),
                );
            }
        }
        if let Some(name) = &stage.name {
            stage_names.push(name);
        }
    }

    // 2. No secrets in ENV or ARG, anywhere.
    let all = file.global.iter().chain(
        file.stages
            .iter()
            .flat_map(|s| std::iter::once(&s.from).chain(&s.instructions)),
    );
    for instruction in all {
        if !matches!(instruction.keyword.as_str(), "ENV" | "ARG") {
            continue;
        }
        for (name, value) in assignments(&instruction.keyword, &instruction.args) {
            if is_secret_name(&name) {
                say(
                    instruction.line,
                    format!(
                        "{} {name} bakes a secret into the image (use a runtime secret or {name}_FILE)",
                        instruction.keyword
                    ),
                );
            } else if value.contains("PRIVATE KEY") {
                say(
                    instruction.line,
                    format!("{} {name} holds a private key", instruction.keyword),
                );
            }
        }
    }

    // 3. Every image the file builds to run (the last stage, and any other `--target` that
    //    sets what it runs) runs as a non-root user.
    for stage in image_stages(&file) {
        let user = stage
            .instructions
            .iter()
            .rev()
            .find(|i| i.keyword == "USER");
        let which = match &stage.name {
            Some(name) => format!("stage {name:?}"),
            None => "the final stage".to_owned(),
        };
        match user {
            None => say(
                stage.from.line,
                format!("{which} sets no USER: the image runs as root"),
            ),
            Some(user) => {
                if let Err(why) = non_root_user(&user.args, stage) {
                    say(user.line, why);
                }
            }
        }
    }
    problems
}

/// The stages that are images to run: the last one, and every stage that sets `ENTRYPOINT` or
/// `CMD` and that no other stage names in `FROM` or `COPY --from` (a multi-target file's other
/// services; a `test` target that only runs a build step is not one). In file order.
fn image_stages(file: &Dockerfile) -> Vec<&Stage> {
    let referenced = |name: &str| {
        file.stages.iter().any(|s| {
            s.image.eq_ignore_ascii_case(name)
                || s.instructions.iter().any(|i| {
                    i.keyword == "COPY"
                        && i.args.split_whitespace().any(|a| {
                            a.strip_prefix("--from=")
                                .is_some_and(|from| from.eq_ignore_ascii_case(name))
                        })
                })
        })
    };
    let count = file.stages.len();
    file.stages
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            *i + 1 == count
                || (s
                    .instructions
                    .iter()
                    .any(|i| i.keyword == "ENTRYPOINT" || i.keyword == "CMD")
                    && s.name.as_deref().is_some_and(|n| !referenced(n)))
        })
        .map(|(_, s)| s)
        .collect()
}

/// `Ok` when `image` is pinned by the project's one rule ([`image_pin`]), after
/// substituting global `ARG` defaults; otherwise why not.
fn pinned(image: &str, global: &[Instruction]) -> Result<(), String> {
    let mut resolved = image.to_owned();
    for arg in global.iter().filter(|i| i.keyword == "ARG") {
        for (name, value) in assignments("ARG", &arg.args) {
            if value.is_empty() {
                continue;
            }
            resolved = resolved
                .replace(&format!("${{{name}}}"), &value)
                .replace(&format!("${name}"), &value);
        }
    }
    if resolved.contains('$') {
        return Err("uses a build argument without a default: cannot tell its tag".to_owned());
    }
    image_pin::problem(&resolved).map_or(Ok(()), Err)
}

/// `Ok` when `spec` (`user[:group]`) names a non-root user the stage can run as.
fn non_root_user(spec: &str, stage: &Stage) -> Result<(), String> {
    let user = spec.split(':').next().unwrap_or_default().trim();
    if user.is_empty() {
        return Err("USER is empty".to_owned());
    }
    if user.contains('$') {
        return Err(format!(
            "USER {spec} uses a variable: cannot tell who runs the image"
        ));
    }
    if let Ok(uid) = user.parse::<u32>() {
        return if uid == 0 {
            Err(format!("USER {spec} is root"))
        } else {
            Ok(())
        };
    }
    if user == "root" {
        return Err(format!("USER {spec} is root"));
    }
    let created = stage.instructions.iter().any(|i| {
        i.keyword == "RUN"
            && ["useradd", "adduser"].iter().any(|tool| {
                i.args
                    .split(|c: char| c.is_whitespace() || c == ';' || c == '&')
                    .skip_while(|w| w != tool)
                    .any(|w| w == user)
            })
    });
    if created {
        Ok(())
    } else {
        Err(format!(
            "USER {spec} is a name not created in the final stage (useradd/adduser): it may not \
             exist, or be root in the base image"
        ))
    }
}

/// The `name=value` pairs of an `ENV` or `ARG` (`ENV key value` legacy form included; an `ARG`
/// without a default has an empty value).
fn assignments(keyword: &str, args: &str) -> Vec<(String, String)> {
    let words = split_words(args);
    if keyword == "ENV" && words.first().is_some_and(|w| !w.contains('=')) {
        let (name, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        return vec![(name.to_owned(), rest.trim().to_owned())];
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (w, String::new()),
        })
        .collect()
}

/// Whitespace-separated words, with double or single quotes grouping and removed.
fn split_words(args: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in args.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            None => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_and_comments_join_into_one_instruction() {
        let f = parse("# c\nFROM a:1 AS build\nRUN one \\\n  # inner\n  two\nFROM b:2\nUSER 1\n");
        assert_eq!(f.stages.len(), 2);
        assert_eq!(f.stages[0].name.as_deref(), Some("build"));
        assert_eq!(f.stages[0].instructions[0].args, "one two");
        assert_eq!(f.stages[0].instructions[0].line, 3);
        assert_eq!(f.stages[1].instructions[0].keyword, "USER");
    }

    #[test]
    fn env_and_arg_forms_give_their_names() {
        assert_eq!(
            assignments("ENV", "A=1 B=\"two words\""),
            [("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            assignments("ENV", "A one two"),
            [("A".into(), "one two".into())]
        );
        assert_eq!(
            assignments("ARG", "TOKEN"),
            [("TOKEN".into(), String::new())]
        );
    }

    #[test]
    fn secret_names_are_recognised_but_file_pointers_are_not() {
        assert!(is_secret_name("LOKI_PASSWORD"));
        assert!(is_secret_name("github_token"));
        assert!(!is_secret_name("INGEST_TOKEN_FILE"));
        assert!(!is_secret_name("HTTP_LISTEN"));
    }
}
