//! A cluster's layout from Slurm's environment (`srun`), for
//! [`execute_from_args`](super::execute_from_args) when no `-n/-p/-h` is given.

use crate::Error;

/// The most processes a Slurm node list or task layout may expand to.
pub const MAX_SLURM_TASKS: usize = 65_536;
/// Timely's port of the first task on each node under Slurm (default
/// [`DEFAULT_TIMELY_PORT`]); a node running several tasks gives them consecutive ports.
pub const TIMELY_PORT_VAR: &str = "PROXYSTORE_TIMELY_PORT";
/// The default of [`TIMELY_PORT_VAR`]: 2101, timely's own.
pub const DEFAULT_TIMELY_PORT: u16 = 2101;

/// This process's place in a cluster launched by Slurm (`srun`): its index and every
/// process's timely address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// This process's index (`SLURM_PROCID`).
    pub process: usize,
    /// Every process's timely address (`host:port`), by index.
    pub addresses: Vec<String>,
}

impl Launch {
    /// Timely's cluster configuration for this process with `threads` workers.
    pub fn config(&self, threads: usize) -> timely::CommunicationConfig {
        timely::CommunicationConfig::Cluster {
            threads,
            process: self.process,
            addresses: self.addresses.clone(),
            report: false,
            zerocopy: false,
        }
    }
}

/// This process's place in a Slurm job step, from the environment (see
/// [`slurm_launch_from`]); `None` when not run by `srun` with two or more tasks.
pub fn slurm_launch() -> Option<Result<Launch, Error>> {
    slurm_launch_from(|name| std::env::var(name).ok())
}

/// This process's place in a Slurm job step, from the variables `get` returns: `None` unless
/// `SLURM_PROCID` and `SLURM_NTASKS` are set and there are two or more tasks.
///
/// - Hosts: `SLURM_STEP_NODELIST`, else `SLURM_JOB_NODELIST` (compressed: `node[01-04,07]`,
///   several groups `a[1-2],b3`; see [`parse_nodelist`]).
/// - Tasks per node: `SLURM_STEP_TASKS_PER_NODE`, else `SLURM_TASKS_PER_NODE` (`2(x3),1`);
///   without either, one task per node.
/// - Which task runs where: `SLURM_DISTRIBUTION` (what `srun --distribution` sets; its
///   first, node-level, part counts): `block` (Slurm's default, also when unset or `*`: the
///   first node's tasks first), `cyclic` (task 0 on the first node, task 1 on the second,
///   ..., round after round, skipping nodes whose tasks are all placed) or `plane=N` (blocks
///   of N tasks, node after node, round after round). `arbitrary` (a `SLURM_HOSTFILE`) is an
///   error: give the hostfile to timely's `-h` instead.
/// - Ports: [`TIMELY_PORT_VAR`] (default 2101) for each node's first task, the next ports for
///   its other tasks.
///
/// An inconsistent or hostile value is an error naming the variable; nothing here panics,
/// and no list expands past [`MAX_SLURM_TASKS`].
pub fn slurm_launch_from(get: impl Fn(&str) -> Option<String>) -> Option<Result<Launch, Error>> {
    let procid = get("SLURM_PROCID")?;
    let ntasks = get("SLURM_NTASKS")?;
    match launch(&get, &procid, &ntasks) {
        Ok(None) => None,
        Ok(Some(launch)) => Some(Ok(launch)),
        Err(e) => Some(Err(e)),
    }
}

fn bad(variable: &str, value: &str, reason: String) -> Error {
    Error::ClusterConfig {
        variable: variable.to_string(),
        value: value.to_string(),
        reason,
    }
}

fn count(variable: &str, value: &str) -> Result<usize, Error> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| bad(variable, value, "expected a number".into()))
}

fn launch(
    get: &impl Fn(&str) -> Option<String>,
    procid: &str,
    ntasks: &str,
) -> Result<Option<Launch>, Error> {
    let tasks = count("SLURM_NTASKS", ntasks)?;
    if tasks > MAX_SLURM_TASKS {
        return Err(bad(
            "SLURM_NTASKS",
            ntasks,
            format!("more than {MAX_SLURM_TASKS} tasks"),
        ));
    }
    if tasks < 2 {
        return Ok(None);
    }
    let process = count("SLURM_PROCID", procid)?;
    if process >= tasks {
        return Err(bad(
            "SLURM_PROCID",
            procid,
            format!("not below SLURM_NTASKS={tasks}"),
        ));
    }
    let (list_var, list) = ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"]
        .iter()
        .find_map(|v| get(v).map(|value| (*v, value)))
        .ok_or_else(|| bad("SLURM_JOB_NODELIST", "", "not set".into()))?;
    let nodes = parse_nodelist(&list).map_err(|reason| bad(list_var, &list, reason))?;
    let per_node = match ["SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"]
        .iter()
        .find_map(|v| get(v).map(|value| (*v, value)))
    {
        Some((variable, value)) => {
            parse_tasks_per_node(&value).map_err(|reason| bad(variable, &value, reason))?
        }
        None => vec![1; nodes.len()],
    };
    if per_node.len() != nodes.len() {
        return Err(bad(
            list_var,
            &list,
            format!(
                "{} nodes, but tasks are given for {} nodes",
                nodes.len(),
                per_node.len()
            ),
        ));
    }
    let placed: usize = per_node.iter().sum();
    if placed != tasks {
        return Err(bad(
            "SLURM_NTASKS",
            ntasks,
            format!("the nodes run {placed} tasks"),
        ));
    }
    let port = match get(TIMELY_PORT_VAR) {
        Some(value) => value
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(TIMELY_PORT_VAR, &value, "expected a port (1-65535)".into()))?,
        None => DEFAULT_TIMELY_PORT,
    };
    let plane = match get(DISTRIBUTION_VAR) {
        Some(value) => {
            distribution(&value).map_err(|reason| bad(DISTRIBUTION_VAR, &value, reason))?
        }
        None => None,
    };
    // The node of each task, in task order, and each task's place among its node's tasks.
    let mut placed_on = vec![0usize; nodes.len()];
    let mut addresses = Vec::with_capacity(tasks);
    for node in task_nodes(&per_node, plane) {
        let local = placed_on[node];
        placed_on[node] += 1;
        let p = u16::try_from(local)
            .ok()
            .and_then(|l| port.checked_add(l))
            .ok_or_else(|| {
                bad(
                    TIMELY_PORT_VAR,
                    &port.to_string(),
                    format!(
                        "{} tasks on {} need ports past 65535",
                        per_node[node], nodes[node]
                    ),
                )
            })?;
        addresses.push(format!("{}:{p}", nodes[node]));
    }
    Ok(Some(Launch { process, addresses }))
}

/// How `srun` distributed the tasks over the nodes (`--distribution`).
pub const DISTRIBUTION_VAR: &str = "SLURM_DISTRIBUTION";

/// The node-level distribution in a `SLURM_DISTRIBUTION` value, as the number of tasks one
/// node takes before the next one's turn: `None` for `block`, `Some(1)` for `cyclic`,
/// `Some(n)` for `plane=n`.
fn distribution(value: &str) -> Result<Option<usize>, String> {
    // `cyclic:block,pack`: the node level comes first; options follow a comma.
    let nodes = value
        .split([',', ':'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match nodes.as_str() {
        "" | "*" | "block" => Ok(None),
        "cyclic" => Ok(Some(1)),
        "arbitrary" => Err(
            "arbitrary layouts (SLURM_HOSTFILE) are not read here: give the hostfile to timely's -h"
                .to_string(),
        ),
        other => match other.strip_prefix("plane=").map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => Ok(Some(n)),
            Some(_) => Err("plane=N needs a task count N of at least 1".to_string()),
            None => Err(format!(
                "unknown distribution {other:?} (expected block, cyclic or plane=N)"
            )),
        },
    }
}

/// The node of each task in task order: in blocks (`plane` `None`), or `plane` tasks per
/// node per round, round after round, skipping nodes that have all their tasks.
fn task_nodes(per_node: &[usize], plane: Option<usize>) -> Vec<usize> {
    let total: usize = per_node.iter().sum();
    let mut order = Vec::with_capacity(total);
    let Some(plane) = plane else {
        for (node, &n) in per_node.iter().enumerate() {
            order.extend(std::iter::repeat_n(node, n));
        }
        return order;
    };
    let mut left = per_node.to_vec();
    while order.len() < total {
        for (node, left) in left.iter_mut().enumerate() {
            let take = plane.min(*left);
            order.extend(std::iter::repeat_n(node, take));
            *left -= take;
        }
    }
    order
}

/// Expands a Slurm node list: `node[01-04,07]` is `node01` .. `node04`, `node07` (the width
/// of a zero-padded lower bound is kept), `a[1-2],b3` is `a1`, `a2`, `b3`; several bracket
/// groups in one name multiply. An error (never a panic) for anything else, and for lists
/// longer than [`MAX_SLURM_TASKS`].
pub fn parse_nodelist(list: &str) -> Result<Vec<String>, String> {
    let list = list.trim();
    if list.is_empty() {
        return Err("an empty node list".into());
    }
    let too_many = || format!("expands to more than {MAX_SLURM_TASKS} names");
    let mut names: Vec<String> = Vec::new();
    for item in split_top_level(list)? {
        if item.is_empty() {
            return Err("an empty name in the list".into());
        }
        let mut expanded = vec![String::new()];
        let mut rest = item;
        while !rest.is_empty() {
            let Some(open) = rest.find('[') else {
                if rest.contains(']') {
                    return Err(format!("unbalanced `]` in `{item}`"));
                }
                expanded.iter_mut().for_each(|n| n.push_str(rest));
                break;
            };
            let prefix = &rest[..open];
            if prefix.contains(']') {
                return Err(format!("unbalanced `]` in `{item}`"));
            }
            let close = rest[open..]
                .find(']')
                .map(|c| open + c)
                .ok_or_else(|| format!("unbalanced `[` in `{item}`"))?;
            let inner = &rest[open + 1..close];
            if inner.contains('[') {
                return Err(format!("nested `[` in `{item}`"));
            }
            let room = MAX_SLURM_TASKS - names.len();
            let values = expand_ranges(inner, room)?;
            let total = expanded
                .len()
                .checked_mul(values.len())
                .filter(|t| *t <= room)
                .ok_or_else(too_many)?;
            let mut next = Vec::with_capacity(total);
            for base in &expanded {
                for value in &values {
                    next.push(format!("{base}{prefix}{value}"));
                }
            }
            expanded = next;
            rest = &rest[close + 1..];
        }
        if names.len() + expanded.len() > MAX_SLURM_TASKS {
            return Err(too_many());
        }
        names.extend(expanded);
    }
    Ok(names)
}

/// Splits at commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced `]` in `{list}`"))?;
            }
            ',' if depth == 0 => {
                items.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced `[` in `{list}`"));
    }
    items.push(list[start..].trim());
    Ok(items)
}

/// `01-04,07` as `01`, `02`, `03`, `04`, `07`; at most `limit` values.
fn expand_ranges(inner: &str, limit: usize) -> Result<Vec<String>, String> {
    let number = |text: &str| -> Result<u64, String> {
        if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{text}` is not a node number"));
        }
        text.parse::<u64>()
            .map_err(|_| format!("`{text}` is not a node number"))
    };
    let mut values = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        let (lo_text, hi_text) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi) = (number(lo_text)?, number(hi_text)?);
        if lo > hi {
            return Err(format!("the range `{part}` runs backwards"));
        }
        let room = limit.saturating_sub(values.len()) as u64;
        if hi - lo >= room {
            return Err(format!("expands to more than {MAX_SLURM_TASKS} names"));
        }
        let width = if lo_text.len() > 1 && lo_text.starts_with('0') {
            lo_text.len()
        } else {
            0
        };
        for n in lo..=hi {
            values.push(format!("{n:0width$}"));
        }
    }
    Ok(values)
}

/// `2(x3),1` as `[2, 2, 2, 1]`: the tasks on each node of the node list.
fn parse_tasks_per_node(text: &str) -> Result<Vec<usize>, String> {
    let mut counts: Vec<usize> = Vec::new();
    for part in text.trim().split(',') {
        let part = part.trim();
        let malformed = || format!("`{part}` is not N or N(xM)");
        let (n, times) = match part.split_once('(') {
            Some((n, rest)) => {
                let times = rest
                    .strip_prefix('x')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(malformed)?;
                (n, times)
            }
            None => (part, "1"),
        };
        let n: usize = n.parse().map_err(|_| malformed())?;
        let times: usize = times.parse().map_err(|_| malformed())?;
        if n == 0 || n > MAX_SLURM_TASKS || times > MAX_SLURM_TASKS - counts.len() {
            return Err(format!("`{part}` is out of bounds"));
        }
        counts.extend(std::iter::repeat_n(n, times));
    }
    if counts.iter().sum::<usize>() > MAX_SLURM_TASKS {
        return Err(format!("more than {MAX_SLURM_TASKS} tasks"));
    }
    Ok(counts)
}
