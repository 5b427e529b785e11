--- diffill: ghost-text code completion from the diffill language server.
---
--- require('diffill').setup({})   -- finds `diffill` on PATH, in ~/.local/bin or the checkout's .venv/bin
---
--- Every option, the commands, the statusline and the mappings: `:help diffill` (doc/diffill.txt).
---
--- Ghost text is drawn by lua/diffill/ghost.lua with inline extmarks on every Neovim version (0.10 and
--- later), including 0.12, which has vim.lsp.inline_completion: that module draws a suggestion whose
--- item has a range as an overlay, on top of the code right of the cursor, and after a keystroke that
--- does not match the suggestion it keeps drawing the stale item (its start cut off) and accepts it on
--- Tab. The diffill server always sends a range, so the native module would do this on every
--- mid-line completion. The plugin's own path inserts the ghost text between the characters (inline
--- virtual text, nothing hidden), drops a suggestion as soon as what is typed leaves it, and lets Tab
--- be Tab then. Both answer the same textDocument/inlineCompletion request.
local M = {}

local NAME = 'diffill'

---@class diffill.Options
M.defaults = {
  cmd = nil, ---@type string[]? the server command; nil: `diffill serve`, looked for as `server_places()` says
  python = nil, ---@type string? a Python with diffill installed: runs `python -m diffill.lsp.cli serve`
  cmd_env = nil, ---@type table<string,string>?
  settings = {}, ---@type table<string,any> the server's settings, by the server's own (camelCase) names
  accept_key = '<Tab>', ---@type string|false accept the whole suggestion
  accept_word_key = '<M-Right>', ---@type string|false accept its next word
  accept_line_key = '<M-C-Right>', ---@type string|false accept the rest of its current line
  dismiss_key = '<C-]>', ---@type string|false hide it (until the next keystroke)
  trigger_key = '<M-\\>', ---@type string|false ask for a suggestion now
  filetypes = nil, ---@type string[]?
  root_markers = { '.git' },
  enabled = true,
  debounce_ms = 100, -- wait after a keystroke before asking (the server debounces too)
  remote_key_cmd = nil, ---@type string[]? command printing the remote server's key (settings.backend = 'remote')
  health_check_timeout_ms = 180000, -- :checkhealth runs `diffill serve --check`, which loads the model once
}

M.options = vim.deepcopy(M.defaults)

--- Last `diffill/status` per client id: { state, message, latency_ms, slow_reason? }.
M.status_by_client = {}

--- Whether the last answered textDocument/inlineCompletion request showed ghost text, per client
--- id: false when the server answered with no items (its gates refused the model's fill, or there
--- was nothing to fill). Answers to requests the typing has overtaken do not count.
M.shown_by_client = {}

--- Records an answer (see shown_by_client); when that changes what status() says, fires
--- DiffillStatus (with the client's last status) and redraws the statuslines.
function M.record_answer(client_id, shown)
  if M.shown_by_client[client_id] ~= shown then
    M.shown_by_client[client_id] = shown
    vim.api.nvim_exec_autocmds('User', { pattern = 'DiffillStatus', modeline = false,
                                         data = M.status_by_client[client_id] or {} })
    pcall(vim.cmd, 'redrawstatus!')
  end
end

--- Worker log files named by the server's messages ("Its log is PATH.").
M.worker_logs_seen = {}

--- True when Neovim has the LSP inline completion module (0.12 and later); diffill does not use it.
function M.has_native_inline()
  return vim.lsp.inline_completion ~= nil
end

local function ghost()
  return require('diffill.ghost')
end

--- The diffill checkout this plugin is in: editors/nvim/lua/diffill/init.lua is four levels below it.
function M.repo_root()
  local source = vim.fn.resolve(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p'))
  return vim.fn.fnamemodify(source, ':h:h:h:h:h')
end

--- Where the documented installs put `diffill`, in the order they are tried after PATH.
function M.server_places()
  local places = {}
  if vim.env.PIPX_BIN_DIR and vim.env.PIPX_BIN_DIR ~= '' then
    places[#places + 1] = vim.env.PIPX_BIN_DIR .. '/diffill' -- pipx install . (when moved)
  end
  places[#places + 1] = vim.fn.expand('~/.local/bin/diffill') -- pip install --user . / pipx install .
  places[#places + 1] = M.repo_root() .. '/.venv/bin/diffill' -- the checkout's own environment
  return places
end

--- The `diffill` executable: on PATH, else where the documented installs put it; nil if none.
---@return string? path
---@return string? where
function M.find_server()
  local on_path = vim.fn.exepath('diffill')
  if on_path ~= '' then
    return on_path, 'PATH'
  end
  for _, place in ipairs(M.server_places()) do
    if vim.fn.executable(place) == 1 then
      return place, vim.fn.fnamemodify(place, ':~:h')
    end
  end
  return nil
end

--- The server command for `opts`; nil when `cmd` and `python` are unset and no `diffill` was found.
---@return string[]?
---@return string? where it came from
function M.server_cmd(opts)
  opts = opts or M.options
  if opts.cmd then
    return opts.cmd, 'the cmd option'
  end
  if opts.python then
    return { opts.python, '-m', 'diffill.lsp.cli', 'serve' }, 'the python option'
  end
  local exe, where = M.find_server()
  if exe then
    return { exe, 'serve' }, where
  end
  return nil
end

M.not_found_hint = {
  'From the diffill checkout: `pip install --user .` (puts diffill in ~/.local/bin) or `pipx install .`',
  'or the checkout\'s own environment from the README\'s quick start (.venv/bin/diffill is found too)',
  'or tell the plugin where it is: require("diffill").setup({ cmd = { "/path/to/diffill", "serve" } })',
}

function M.not_found_message()
  local places = { 'PATH' }
  for _, place in ipairs(M.server_places()) do
    places[#places + 1] = vim.fn.fnamemodify(place, ':~')
  end
  return ('diffill: the server was not found (looked on %s). Install it from the checkout with '
    .. '`pip install --user .`, or set its path: require("diffill").setup({ cmd = { "/path/to/diffill", "serve" } })')
    :format(table.concat(places, ', '))
end

--- The running diffill clients (optionally for one buffer).
function M.clients(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  return get({ name = NAME, bufnr = bufnr })
end

-- One message per distinct error, short enough for the command line (no "Press ENTER" prompt);
-- the whole text is in `:Diffill status`. Both the status notification and the server's
-- window/showMessage carry the same error: the second is not shown again.
local last_error_shown = nil

local function one_line(text)
  local line = text:gsub('%s*\n%s*', ' ')
  local room = math.max(30, (tonumber(vim.v.echospace) or 80) - 1)
  if vim.fn.strdisplaywidth(line) > room then
    -- Long paths first: their last part says which file.
    line = line:gsub('/[^%s\'":,]+', function(path)
      return #path > 24 and ('.../' .. vim.fn.fnamemodify(path, ':t')) or path
    end)
  end
  if vim.fn.strdisplaywidth(line) > room then
    local tail = '... (:Diffill status)'
    line = vim.fn.strcharpart(line, 0, room - #tail) .. tail
  end
  return line
end

local function notify_error(message, level)
  message = (message or 'server error'):gsub('^diffill: ', '')
  if message == last_error_shown then
    return
  end
  last_error_shown = message
  vim.notify(one_line('diffill: ' .. message), level or vim.log.levels.ERROR)
end

local function remember_log(message)
  local path = type(message) == 'string' and message:match('Its log is (%S+)%.') or nil
  if path and not vim.tbl_contains(M.worker_logs_seen, path) then
    table.insert(M.worker_logs_seen, path)
  end
end

local function on_status(_, result, ctx)
  if type(result) ~= 'table' then
    return
  end
  local previous = M.status_by_client[ctx.client_id]
  M.status_by_client[ctx.client_id] = result
  remember_log(result.message)
  if result.state == 'error' then
    notify_error(result.message)
  elseif result.state == 'ready' then
    last_error_shown = nil
    if not previous or (previous.state ~= 'ready' and previous.state ~= 'busy') then
      -- The model just became ready: a buffer already in insert mode asks now, not at the next key.
      local client = vim.lsp.get_client_by_id(ctx.client_id)
      if client then
        ghost().on_ready(client)
      end
    end
  end
  vim.api.nvim_exec_autocmds('User', { pattern = 'DiffillStatus', modeline = false, data = result })
  pcall(vim.cmd, 'redrawstatus!')
end

local function on_show_message(_, result, ctx)
  if type(result) ~= 'table' or type(result.message) ~= 'string' then
    return
  end
  remember_log(result.message)
  local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
  local level = levels[result.type] or vim.log.levels.INFO
  if level >= vim.log.levels.WARN then
    notify_error(result.message, level)
  else
    vim.notify(one_line(result.message), level)
  end
end

local function model_name(opts)
  local settings = (opts or M.options).settings or {}
  if settings.backend == 'remote' then
    local remote = settings.remote or {}
    return ('%s at %s (remote)'):format(remote.model or 'the served model', remote.url or '(remote.url not set)')
  end
  return type(settings.model) == 'string' and settings.model or 'the embedded model (settings.model not set)'
end

--- A short text for the statusline: "diffill ready 120 ms", "diffill ready 700 ms (no completion
--- shown)", "diffill loading", "diffill not found", ...
function M.status(bufnr)
  local client = M.clients(bufnr)[1]
  if not client then
    return M.missing and 'diffill not found' or ''
  end
  if not M.options.enabled then
    return 'diffill off'
  end
  local s = M.status_by_client[client.id]
  if not s then
    return 'diffill'
  end
  local text = 'diffill ' .. tostring(s.state)
  if (s.state == 'ready' or s.state == 'busy') and type(s.latency_ms) == 'number' then
    text = text .. (' %d ms'):format(math.floor(s.latency_ms + 0.5))
  end
  if s.state == 'ready' and M.shown_by_client[client.id] == false then
    text = text .. ' (no completion shown)'
  end
  if type(s.slow_reason) == 'string' and s.slow_reason ~= '' then
    text = text .. ', slow: ' .. s.slow_reason
  end
  if s.state == 'error' then
    text = text .. ' (:Diffill status)'
  end
  return text
end

--- What `:Diffill status` says: the state, its reason, the model and the server command.
function M.status_lines(bufnr)
  local client = M.clients(bufnr)[1]
  if not client then
    if M.missing then
      return { M.not_found_message() }
    end
    return { 'diffill: no server attached to this buffer' }
  end
  local s = M.status_by_client[client.id] or {}
  local state = s.state or 'starting'
  local lines = { ('diffill %s%s'):format(M.options.enabled and state or 'off (' .. state .. ')',
    type(s.latency_ms) == 'number' and (', last completion %d ms'):format(math.floor(s.latency_ms + 0.5)) or '') }
  if type(s.message) == 'string' and s.message ~= '' then
    lines[#lines + 1] = (state == 'error' and 'reason: ' or 'server: ') .. s.message
  end
  if type(s.slow_reason) == 'string' and s.slow_reason ~= '' then
    lines[#lines + 1] = 'slow: ' .. s.slow_reason
  end
  if M.shown_by_client[client.id] == false then
    lines[#lines + 1] = 'last request: no completion shown (the server\'s gates refused the model\'s fill, '
      .. 'or there was nothing to fill)'
  end
  lines[#lines + 1] = 'model: ' .. model_name()
  local cmd = client.config and client.config.cmd
  if type(cmd) == 'table' then
    lines[#lines + 1] = 'command: ' .. table.concat(cmd, ' ')
  end
  return lines
end

--- Accepts the ghost text shown in the current buffer; false when there is none.
---@param part? 'word'|'line' only the next word or the rest of the line
function M.accept(part)
  if not M.options.enabled then
    return false
  end
  return ghost().accept(vim.api.nvim_get_current_buf(), part)
end

--- Hides the ghost text; false when none was shown.
function M.dismiss()
  return ghost().dismiss(vim.api.nvim_get_current_buf())
end

--- Asks the server for a suggestion at the cursor now.
function M.trigger()
  if not M.options.enabled then
    return false
  end
  return ghost().trigger(vim.api.nvim_get_current_buf())
end

local function map(bufnr, key, run, desc)
  if not key then
    return
  end
  vim.keymap.set('i', key, function()
    if run() then
      return ''
    end
    return key -- nothing to do: the key does what it does without diffill
  end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'diffill: ' .. desc })
end

local function map_keys(bufnr)
  local o = M.options
  map(bufnr, o.accept_key, function()
    return M.accept()
  end, 'accept the ghost text')
  map(bufnr, o.accept_word_key, function()
    return M.accept('word')
  end, 'accept the next word of the ghost text')
  map(bufnr, o.accept_line_key, function()
    return M.accept('line')
  end, 'accept the rest of the ghost text\'s line')
  map(bufnr, o.dismiss_key, M.dismiss, 'hide the ghost text')
  map(bufnr, o.trigger_key, function()
    M.trigger()
    return true
  end, 'ask for a suggestion now')
end

local function on_attach(client, bufnr)
  map_keys(bufnr)
  if M.has_native_inline() then
    -- Never both: a user config that enabled the native module everywhere leaves diffill to ghost.lua.
    pcall(vim.lsp.inline_completion.enable, false, { client_id = client.id })
  end
  ghost().attach(bufnr, client)
end

--- The name the server reads the remote key from (settings.remote.apiKeyEnv, default DIFFILL_API_KEY).
function M.api_key_env(opts)
  local remote = (opts or M.options).settings and (opts or M.options).settings.remote or {}
  return type(remote.apiKeyEnv) == 'string' and remote.apiKeyEnv or 'DIFFILL_API_KEY'
end

--- cmd_env with the remote key from `remote_key_cmd` (run once per client start; never logged).
function M.server_env(opts)
  opts = opts or M.options
  local env = vim.deepcopy(opts.cmd_env or {})
  local settings = opts.settings or {}
  if settings.backend == 'remote' and opts.remote_key_cmd then
    local ok, out = pcall(vim.fn.system, opts.remote_key_cmd)
    local key = ok and vim.v.shell_error == 0 and vim.trim(out or '') or ''
    if key ~= '' then
      env[M.api_key_env(opts)] = key
    else
      vim.notify('diffill: remote_key_cmd gave no key (exit ' .. vim.v.shell_error .. ')', vim.log.levels.WARN)
    end
  end
  return next(env) ~= nil and env or nil
end

--- The server settings as a JSON-ready table (empty tables become objects).
function M.server_settings(opts)
  local settings = vim.deepcopy((opts or M.options).settings or {})
  if type(settings.remote) == 'table' and next(settings.remote) == nil then
    settings.remote = vim.empty_dict()
  end
  if next(settings) == nil then
    settings = vim.empty_dict() -- a JSON object, not an empty array
  end
  return settings
end

local function client_config(cmd)
  local opts = M.options
  local settings = M.server_settings(opts)
  return {
    cmd = cmd,
    cmd_env = M.server_env(opts),
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    init_options = settings,
    settings = { diffill = settings },
    capabilities = {
      -- Declared on every version so the server answers with inline completions rather than the
      -- plain completion fallback.
      textDocument = { inlineCompletion = { dynamicRegistration = false } },
    },
    handlers = { ['diffill/status'] = on_status, ['window/showMessage'] = on_show_message },
    on_attach = on_attach,
  }
end

--- 0.10: no vim.lsp.config / vim.lsp.enable; start the client from a FileType autocmd.
local function start_legacy(group, cmd)
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    callback = function(args)
      local bufnr = args.buf
      if vim.bo[bufnr].buftype ~= '' then
        return
      end
      local opts = M.options
      if opts.filetypes and not vim.tbl_contains(opts.filetypes, vim.bo[bufnr].filetype) then
        return
      end
      local config = client_config(cmd)
      config.name = NAME
      config.root_dir = vim.fs.root and vim.fs.root(bufnr, opts.root_markers) or vim.fn.getcwd()
      config.capabilities = vim.tbl_deep_extend('force', vim.lsp.protocol.make_client_capabilities(), config.capabilities)
      vim.lsp.start(config, { bufnr = bufnr })
    end,
  })
end

--- Tells once, when the first file opens, that the server was not found and what to set.
local function warn_missing(group, message)
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    once = true,
    callback = function(args)
      if vim.bo[args.buf].buftype == '' then
        vim.notify(message, vim.log.levels.WARN)
      end
    end,
  })
end

--- Starts (or, when the server was not found, waits to tell so) with the current options.
local function start()
  local group = vim.api.nvim_create_augroup('diffill', { clear = true })
  local cmd = M.server_cmd()
  M.missing = cmd == nil
  if not cmd then
    warn_missing(group, M.not_found_message())
    return false
  end
  if vim.fn.executable(cmd[1]) == 0 then
    warn_missing(group, ('diffill: %s (cmd[1] of the %s) is not an executable; set cmd = { "/path/to/diffill", "serve" }')
      :format(cmd[1], M.options.cmd and 'cmd option' or 'python option'))
  end
  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config(NAME, client_config(cmd))
    vim.lsp.enable(NAME)
  else
    start_legacy(group, cmd)
  end
  return true
end

local function restart_buffers(buffers)
  for _, bufnr in ipairs(buffers) do
    if vim.api.nvim_buf_is_valid(bufnr) and vim.bo[bufnr].buftype == '' then
      vim.api.nvim_exec_autocmds('FileType', { buffer = bufnr, modeline = false })
    end
  end
end

function M.set_enabled(enabled)
  M.options.enabled = enabled
  for _, client in ipairs(M.clients()) do
    for bufnr in pairs(client.attached_buffers) do
      if not enabled then
        ghost().clear(bufnr)
      end
    end
  end
  pcall(vim.cmd, 'redrawstatus!')
end

function M.restart()
  local clients = M.clients()
  if #clients == 0 then
    -- Nothing running (the server was not found, say): look again and start in the open buffers.
    if start() then
      restart_buffers(vim.api.nvim_list_bufs())
    else
      vim.notify(M.not_found_message(), vim.log.levels.WARN)
    end
    return
  end
  for _, client in ipairs(clients) do
    local buffers = vim.tbl_keys(client.attached_buffers)
    if vim.fn.has('nvim-0.11') == 1 then
      client:stop()
    else
      client.stop()
    end
    vim.defer_fn(function()
      restart_buffers(buffers)
    end, 500)
  end
end

--- The folder of the shared worker's socket, lock and log (as the server's sockets.runtime_dir()).
function M.runtime_dir()
  local base = vim.env.XDG_RUNTIME_DIR
  if base and base:sub(1, 1) == '/' and vim.uv.fs_lstat(base) then
    return base .. '/diffill'
  end
  local tmp = vim.env.TMPDIR or '/tmp'
  return ('%s/diffill-%d'):format(tmp:gsub('/$', ''), vim.uv.getuid())
end

--- The log files of diffill's model worker that exist: those the server named, and the shared
--- worker's log for the current settings.
function M.worker_logs()
  local found = {}
  local function add(path)
    if path and vim.uv.fs_stat(path) and not vim.tbl_contains(found, path) then
      found[#found + 1] = path
    end
  end
  for _, client in ipairs(M.clients()) do
    -- A server that names the log in its stats reply (worker.log).
    local ok, reply = pcall(function()
      if vim.fn.has('nvim-0.11') == 1 then
        return client:request_sync('diffill/stats', vim.empty_dict(), 2000)
      end
      return client.request_sync('diffill/stats', vim.empty_dict(), 2000)
    end)
    local stats = ok and reply and reply.result
    if type(stats) == 'table' and type(stats.worker) == 'table' then
      add(type(stats.worker.log) == 'string' and stats.worker.log or nil)
    end
  end
  for _, path in ipairs(M.worker_logs_seen) do
    add(path)
  end
  local settings = M.options.settings or {}
  if settings.workerMode ~= 'private' and settings.backend ~= 'remote' then
    local socket = settings.workerSocket
    if type(socket) ~= 'string' then
      -- one shared worker per (model, device, dtype): worker-<sha256 of the JSON list>[:12].sock
      local model = type(settings.model) == 'string' and vim.trim(settings.model) or nil
      if model and model:sub(1, 1) == '~' then
        model = vim.fn.expand(model)
      end
      local key = ('[%s, %s, %s]'):format(model and vim.json.encode(model) or 'null',
        vim.json.encode((settings.device or 'auto'):lower()), vim.json.encode((settings.dtype or 'auto'):lower()))
      add(('%s/worker-%s.sock.log'):format(M.runtime_dir(), vim.fn.sha256(key):sub(1, 12)))
    end
  end
  return found
end

--- Opens the server's log (its stderr, which Neovim writes to its LSP log) and the worker's logs.
function M.open_logs()
  local lsp_log = vim.lsp.get_log_path()
  local opened = {}
  vim.cmd.tabnew(vim.fn.fnameescape(lsp_log))
  opened[#opened + 1] = lsp_log .. ' (the server\'s messages)'
  vim.cmd('normal! G')
  vim.fn.search('diffill', 'bcW')
  local worker_logs = M.worker_logs()
  for _, path in ipairs(worker_logs) do
    vim.cmd.split(vim.fn.fnameescape(path))
    vim.cmd('normal! G')
    opened[#opened + 1] = path .. ' (the model worker\'s log)'
  end
  if #worker_logs == 0 then
    opened[#opened + 1] = 'no worker log file: a private worker writes to the server\'s messages'
  end
  vim.notify(one_line('diffill: ' .. table.concat(opened, '; ')))
  return opened
end

local subcommands = {
  enable = function()
    M.set_enabled(true)
  end,
  disable = function()
    M.set_enabled(false)
  end,
  toggle = function()
    M.set_enabled(not M.options.enabled)
  end,
  restart = function()
    M.restart()
  end,
  status = function()
    vim.notify(table.concat(M.status_lines(), '\n'))
  end,
  log = function()
    M.open_logs()
  end,
}

---@param opts diffill.Options?
function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  vim.api.nvim_set_hl(0, 'DiffillGhost', { link = 'Comment', default = true })
  start()
  vim.api.nvim_create_user_command('Diffill', function(cmd)
    local run = subcommands[cmd.args]
    if not run then
      vim.notify('diffill: unknown subcommand ' .. cmd.args, vim.log.levels.ERROR)
      return
    end
    run()
  end, {
    nargs = 1,
    complete = function()
      return vim.tbl_keys(subcommands)
    end,
    desc = 'diffill: enable | disable | toggle | restart | status | log',
  })
end

return M
