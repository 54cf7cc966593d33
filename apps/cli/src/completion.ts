/**
 * `vmctl completion bash|zsh`: a completion script made from the command tree itself (commands and
 * each one's options), so that it cannot drift from what vmctl accepts.
 */
import type { Command } from 'commander';
import { UsageError } from './errors.js';

function optionsOf(cmd: Command): string[] {
  return cmd.options.flatMap((o) => [o.long, o.short].filter((f): f is string => typeof f === 'string'));
}

export function completionScript(shell: string, program: Command): string {
  const commands = program.commands.map((c) => c.name());
  const global = optionsOf(program);
  const cases = program.commands
    .map((c) => `    ${c.name()}) opts="${[...optionsOf(c), ...global].join(' ')}" ;;`)
    .join('\n');
  const bash = `# vmctl bash completion: source <(vmctl completion bash)
_vmctl() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" opts="${global.join(' ')}" w
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case "$w" in -*) ;; *) cmd="$w"; break ;; esac
  done
  case "$cmd" in
${cases}
    "") COMPREPLY=($(compgen -W "${commands.join(' ')} $opts" -- "$cur")); return ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _vmctl vmctl
`;
  if (shell === 'bash') return bash;
  // zsh runs bash completion functions through bashcompinit.
  if (shell === 'zsh') return `# vmctl zsh completion: source <(vmctl completion zsh)\nautoload -Uz bashcompinit && bashcompinit\n${bash}`;
  throw new UsageError(`completion: shell must be bash or zsh, got ${JSON.stringify(shell)}`);
}
