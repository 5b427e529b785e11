--- diffill: ghost-text code completion from the diffill language server.
---
--- require('diffill').setup({
---   cmd = { 'diffill', 'serve' },   -- or python = '/path/to/python' to run `python -m diffill.lsp.cli serve`
---   settings = { model = nil, device = 'auto', debounceMs = 75, languages = nil },  -- the server's settings
---   accept_key = '<Tab>',           -- insert-mode key that accepts the ghost text (false: no mapping)
---   filetypes = nil,                -- nil: every file buffer
--- })
---
--- A serving engine (vLLM, NVIDIA NIM) instead of the local model, with the server's own setting names:
---
--- require('diffill').setup({
---   settings = { backend = 'remote',
---                remote = { url = 'https://gpu1:8000/v1', model = nil, endpoint = 'completions',
---                           apiKeyEnv = 'DIFFILL_API_KEY' } },
---   remote_key_cmd = { 'pass', 'show', 'diffill/gpu1' },  -- optional: prints the key; it reaches the server
--- })                                                      -- as apiKeyEnv, never the settings or the log
---
--- Neovim >= 0.12 shows the server's completions with vim.lsp.inline_completion; 0.10 and 0.11 draw
--- them with extmarks from the same textDocument/inlineCompletion request (lua/diffill/ghost.lua).
local M = {}

local NAME = 'diffill'

---@class diffill.Options
M.defaults = {
  cmd = nil, ---@type string[]?
  python = nil, ---@type string?
  cmd_env = nil, ---@type table<string,string>?
  settings = {}, ---@type table<string,any>
  accept_key = '<Tab>', ---@type string|false
  filetypes = nil, ---@type string[]?
  root_markers = { '.git' },
  enabled = true,
  debounce_ms = 100, -- 0.10/0.11 only: wait after a keystroke before asking (the server debounces too)
  remote_key_cmd = nil, ---@type string[]? command printing the remote server's key (settings.backend = 'remote')
}

M.options = vim.deepcopy(M.defaults)

--- Last `diffill/status` per client id: { state, message, latency_ms }.
M.status_by_client = {}

--- True when Neovim has the LSP inline completion module (0.12 and later).
function M.has_native_inline()
  return vim.lsp.inline_completion ~= nil
end

local function ghost()
  return require('diffill.ghost')
end

function M.server_cmd(opts)
  opts = opts or M.options
  if opts.cmd then
    return opts.cmd
  end
  if opts.python then
    return { opts.python, '-m', 'diffill.lsp.cli', 'serve' }
  end
  return { 'diffill', 'serve' }
end

--- The running diffill clients (optionally for one buffer).
function M.clients(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  return get({ name = NAME, bufnr = bufnr })
end

local function on_status(_, result, ctx)
  if type(result) ~= 'table' then
    return
  end
  local previous = M.status_by_client[ctx.client_id]
  M.status_by_client[ctx.client_id] = result
  if result.state == 'error' and not (previous and previous.state == 'error' and previous.message == result.message) then
    vim.notify('diffill: ' .. (result.message or 'server error'), vim.log.levels.ERROR)
  end
  vim.api.nvim_exec_autocmds('User', { pattern = 'DiffillStatus', modeline = false, data = result })
end

--- A short text for the statusline: "diffill ready 120 ms", "diffill loading", ...
function M.status(bufnr)
  local client = M.clients(bufnr)[1]
  if not client then
    return ''
  end
  if not M.options.enabled then
    return 'diffill off'
  end
  local s = M.status_by_client[client.id]
  if not s then
    return 'diffill'
  end
  local text = 'diffill ' .. s.state
  if s.state == 'ready' and type(s.latency_ms) == 'number' then
    text = text .. (' %d ms'):format(math.floor(s.latency_ms + 0.5))
  end
  return text
end

--- Applies a vim.lsp.inline_completion item. Unlike the default, the range is extended over what was
--- typed since the item arrived (typing through it), so accepting before the next answer does not
--- insert those characters twice.
local function apply_item(item)
  local bufnr = vim.api.nvim_get_current_buf()
  local text = item.insert_text
  if type(text) ~= 'string' then
    vim.snippet.expand(text.value)
    return
  end
  if not item.range then
    vim.api.nvim_paste(text, false, -1)
    return
  end
  local srow, scol = item.range.start.row, item.range.start.col
  local erow, ecol = item.range.end_.row, item.range.end_.col
  local cursor = vim.api.nvim_win_get_cursor(0)
  local crow, ccol = cursor[1] - 1, cursor[2]
  if crow == srow and (crow > erow or (crow == erow and ccol > ecol)) then
    local typed = vim.api.nvim_buf_get_text(bufnr, srow, scol, crow, ccol, {})[1] or ''
    if text:sub(1, #typed) == typed then
      erow, ecol = crow, ccol
    end
  end
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
  vim.api.nvim_win_set_cursor(0, { srow + #lines, (#lines == 1 and scol or 0) + #lines[#lines] })
end

--- Accepts the ghost text shown in the current buffer; false when there is none.
function M.accept()
  if not M.options.enabled then
    return false
  end
  if M.has_native_inline() then
    return vim.lsp.inline_completion.get({ on_accept = apply_item })
  end
  return ghost().accept(vim.api.nvim_get_current_buf())
end

local function map_accept(bufnr)
  local key = M.options.accept_key
  if not key then
    return
  end
  vim.keymap.set('i', key, function()
    if M.accept() then
      return ''
    end
    return key
  end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'diffill: accept the ghost text' })
end

local function on_attach(client, bufnr)
  map_accept(bufnr)
  if M.has_native_inline() then
    if M.options.enabled then
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    end
  else
    ghost().attach(bufnr, client)
  end
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

local function client_config()
  local opts = M.options
  local settings = vim.deepcopy(opts.settings or {})
  if type(settings.remote) == 'table' and next(settings.remote) == nil then
    settings.remote = vim.empty_dict()
  end
  if next(settings) == nil then
    settings = vim.empty_dict() -- a JSON object, not an empty array
  end
  return {
    cmd = M.server_cmd(opts),
    cmd_env = M.server_env(opts),
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    init_options = settings,
    settings = { diffill = settings },
    capabilities = {
      -- Declared on every version so the server answers with inline completions rather than the
      -- plain completion fallback; 0.12 declares it itself.
      textDocument = { inlineCompletion = { dynamicRegistration = false } },
    },
    handlers = { ['diffill/status'] = on_status },
    on_attach = on_attach,
  }
end

--- 0.10: no vim.lsp.config / vim.lsp.enable; start the client from a FileType autocmd.
local function start_legacy(group)
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
      local config = client_config()
      config.name = NAME
      config.root_dir = vim.fs.root and vim.fs.root(bufnr, opts.root_markers) or vim.fn.getcwd()
      config.capabilities = vim.tbl_deep_extend('force', vim.lsp.protocol.make_client_capabilities(), config.capabilities)
      vim.lsp.start(config, { bufnr = bufnr })
    end,
  })
end

function M.set_enabled(enabled)
  M.options.enabled = enabled
  for _, client in ipairs(M.clients()) do
    if M.has_native_inline() then
      vim.lsp.inline_completion.enable(enabled, { client_id = client.id })
    else
      for bufnr in pairs(client.attached_buffers) do
        if not enabled then
          ghost().clear(bufnr)
        end
      end
    end
  end
end

function M.restart()
  for _, client in ipairs(M.clients()) do
    local buffers = vim.tbl_keys(client.attached_buffers)
    if vim.fn.has('nvim-0.11') == 1 then
      client:stop()
    else
      client.stop()
    end
    vim.defer_fn(function()
      for _, bufnr in ipairs(buffers) do
        if vim.api.nvim_buf_is_valid(bufnr) then
          vim.api.nvim_exec_autocmds('FileType', { buffer = bufnr, modeline = false })
        end
      end
    end, 500)
  end
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
  restart = M.restart,
  status = function()
    local text = M.status()
    vim.notify(text ~= '' and text or 'diffill: no server attached to this buffer')
  end,
  log = function()
    vim.cmd.tabnew(vim.lsp.get_log_path())
  end,
}

---@param opts diffill.Options?
function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  vim.api.nvim_set_hl(0, 'DiffillGhost', { link = 'Comment', default = true })
  local group = vim.api.nvim_create_augroup('diffill', { clear = true })
  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config(NAME, client_config())
    vim.lsp.enable(NAME)
  else
    start_legacy(group)
  end
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
