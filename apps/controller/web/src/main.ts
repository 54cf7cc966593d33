/**
 * The console's entry: routes by the address's `#` (`#/` the cluster, `#/migrations/<id>` one
 * migration), keeps one event stream open for the page shown, and runs the actions. Errors of the API
 * are shown as they come (UNAUTHENTICATED opens the login form; PERMISSION_DENIED says the token may
 * only read, and hides the action buttons).
 */
import './console.css';
import { ApiError, call, events, getToken, setToken, takeTokenFromAddress, type ClusterView, type Migration, type Node, type Vm } from './api.js';
import { h } from './dom.js';
import { MigrationPage } from './migration-page.js';
import { renderOverview, type OverviewActions } from './overview.js';

const app = document.getElementById('app')!;
const statusEl = document.getElementById('status')!;
const scopeEl = document.getElementById('scope')!;
const errorEl = document.getElementById('error')!;
const dialog = document.getElementById('migrate-dialog') as HTMLDialogElement;
const logout = document.getElementById('logout') as HTMLButtonElement;

let closeStream: (() => void) | undefined;
let lastCluster: ClusterView | undefined;

function showError(err: unknown): void {
  if (err instanceof ApiError) {
    if (err.codeName === 'UNAUTHENTICATED') return showLogin(err.message);
    if (err.codeName === 'PERMISSION_DENIED') {
      document.body.classList.add('read-only');
      scopeEl.textContent = 'read-only token';
    }
    errorEl.textContent = `${err.codeName}${err.reason ? ` (${err.reason})` : ''}: ${err.message}`;
  } else {
    errorEl.textContent = String(err instanceof Error ? err.message : err);
  }
  errorEl.hidden = false;
}

function clearError(): void {
  errorEl.hidden = true;
  errorEl.textContent = '';
}

function showLogin(why: string): void {
  closeStream?.();
  closeStream = undefined;
  statusEl.textContent = 'signed out';
  const input = h('input', { type: 'password', name: 'token', placeholder: 'API token', autocomplete: 'current-password', required: true });
  app.replaceChildren(h('form', {
    class: 'card login', id: 'login',
    onsubmit: (e: Event) => {
      e.preventDefault();
      setToken(input.value.trim());
      clearError();
      route();
    },
  }, h('h2', {}, 'Sign in'), h('p', { class: 'muted' }, why), input, h('button', { type: 'submit' }, 'Sign in')));
  input.focus();
}

async function act(run: () => Promise<unknown>): Promise<unknown> {
  try {
    const result = await run();
    clearError();
    return result;
  } catch (err) {
    showError(err);
    return undefined;
  }
}

function openMigrate(vm: Vm, nodes: Node[]): void {
  const target = h('select', { name: 'target' },
    h('option', { value: '' }, 'chosen by the scheduler'),
    nodes.filter((n) => n.nodeId !== vm.nodeId).map((n) => h('option', { value: n.nodeId }, n.nodeId)));
  const num = (name: string, placeholder: string) => h('input', { type: 'number', name, placeholder, min: 0, step: 'any' });
  const downtime = num('downtimeLimitMs', 'default 300');
  const bandwidth = num('maxBandwidthMibPerSec', '0 = unlimited');
  const rounds = num('maxRounds', 'default 30');
  const autoConverge = h('input', { type: 'checkbox', name: 'autoConverge' });
  const xbzrle = h('input', { type: 'checkbox', name: 'xbzrle' });
  const xbzrleCache = num('xbzrleCacheMib', 'default 64, ≤ ¼ of the VM');
  const channels = num('multifdChannels', 'default 1 (QEMU nodes: 1–16)');
  const completion = num('completionTimeoutMs', 'default by VM size');
  const field = (label: string, input: HTMLElement) => h('label', {}, h('span', {}, label), input);
  const numberOf = (i: HTMLInputElement) => (i.value === '' ? undefined : Number(i.value));
  dialog.replaceChildren(h('form', {
    method: 'dialog', id: 'migrate-form',
    onsubmit: async (e: Event) => {
      e.preventDefault();
      const policy = {
        downtimeLimitMs: numberOf(downtime), maxBandwidthMibPerSec: numberOf(bandwidth), maxRounds: numberOf(rounds),
        autoConverge: autoConverge.checked || undefined, xbzrle: xbzrle.checked || undefined,
        xbzrleCacheMib: numberOf(xbzrleCache), multifdChannels: numberOf(channels), completionTimeoutMs: numberOf(completion),
      };
      const m = (await act(() => call<Migration>('POST', `/api/vms/${encodeURIComponent(vm.vmId)}/migrate`, { targetNodeId: target.value, policy }))) as Migration | undefined;
      dialog.close();
      if (m) location.hash = `#/migrations/${encodeURIComponent(m.migrationId)}`;
    },
  },
  h('h3', {}, `Migrate ${vm.name || vm.vmId}`),
  h('p', { class: 'muted' }, `from ${vm.nodeId}`),
  field('target', target), field('downtime limit (ms)', downtime), field('max bandwidth (MiB/s)', bandwidth),
  field('max rounds', rounds), field('auto-converge', autoConverge), field('XBZRLE', xbzrle),
  field('XBZRLE cache (MiB)', xbzrleCache), field('multifd channels', channels), field('completion timeout (ms)', completion),
  h('div', { class: 'actions' },
    h('button', { type: 'button', onclick: () => dialog.close() }, 'Close'),
    h('button', { type: 'submit', class: 'primary', 'data-action': 'start-migration' }, 'Start migration'))));
  dialog.showModal();
}

const actions: OverviewActions = {
  migrate: (vm) => openMigrate(vm, lastCluster?.nodes ?? []),
  cancel: (id) => void act(() => call('POST', `/api/migrations/${encodeURIComponent(id)}/cancel`)),
  node: (id, action) => void act(() => call('POST', `/api/nodes/${encodeURIComponent(id)}/${action}`)),
};

function live(): void {
  statusEl.textContent = 'live';
  statusEl.className = 'status live';
}
function down(): void {
  statusEl.textContent = 'reconnecting…';
  statusEl.className = 'status down';
}

function showOverview(): void {
  app.replaceChildren(h('p', { class: 'muted' }, 'loading…'));
  closeStream = events('/api/events', {
    cluster: (data) => {
      lastCluster = data as ClusterView;
      live();
      app.replaceChildren(renderOverview(lastCluster, actions));
    },
    'api-error': (data) => showError(new ApiError((data as ApiError).codeName, (data as ApiError).message, (data as ApiError).reason)),
  }, live, down);
}

function showMigration(id: string): void {
  const page = new MigrationPage(id, actions.cancel);
  app.replaceChildren(page.el);
  closeStream = events(`/api/migrations/${encodeURIComponent(id)}/events`, {
    migration: (m) => { live(); page.update(m as Migration); },
    'api-error': (data) => showError(new ApiError((data as ApiError).codeName, (data as ApiError).message, (data as ApiError).reason)),
    end: () => { closeStream?.(); statusEl.textContent = 'finished'; statusEl.className = 'status'; },
  }, live, down);
}

/** Probes the token once (an UNAUTHENTICATED answer opens the login form), then shows the page. */
async function route(): Promise<void> {
  closeStream?.();
  closeStream = undefined;
  logout.hidden = getToken() === '';
  try {
    await call('GET', '/api/cluster');
  } catch (err) {
    showError(err);
    if (err instanceof ApiError && err.codeName === 'UNAUTHENTICATED') return;
  }
  const m = /^#\/migrations\/(.+)$/.exec(location.hash);
  if (m) showMigration(decodeURIComponent(m[1]!));
  else showOverview();
}

takeTokenFromAddress();
logout.addEventListener('click', () => { setToken(''); showLogin('Signed out.'); });
window.addEventListener('hashchange', () => { clearError(); void route(); });
void route();
