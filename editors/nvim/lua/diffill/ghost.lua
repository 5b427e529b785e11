--- Ghost text on every Neovim version: the textDocument/inlineCompletion request, drawn with inline
--- extmarks (the code right of the cursor moves right, never hidden) and accepted with the same key.
--- 0.12's vim.lsp.inline_completion is not used: see the top of lua/diffill/init.lua for why.
---
--- The shown item is anchored by two extmarks around the range it replaces (at first the cursor),
--- so typing moves the anchors with the text. While what is typed since the anchor is a prefix of
--- the item, the rest stays on screen; the server then answers the next request from its cache.
local M = {}

local api = vim.api
local anchors_ns = api.nvim_create_namespace('diffill.ghost.anchors')
local draw_ns = api.nvim_create_namespace('diffill.ghost')
local INVOKED = 1 -- InlineCompletionTriggerKind.Invoked
local AUTOMATIC = 2 -- InlineCompletionTriggerKind.Automatic

---@class diffill.GhostItem
---@field text string
---@field start_mark integer
---@field end_mark integer

---@class diffill.GhostState
---@field client_id integer
---@field item diffill.GhostItem?
---@field timer uv_timer_t?
---@field request_id integer?
---@field augroup integer

---@type table<integer, diffill.GhostState>
local buffers = {}

local function options()
  return require('diffill').options
end

local function request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function cancel(client, id)
  if vim.fn.has('nvim-0.11') == 1 then
    client:cancel_request(id)
  else
    client.cancel_request(id)
  end
end

--- Byte column of an LSP position's character on `line`.
local function byte_col(line, character, encoding)
  if encoding == 'utf-8' then
    return math.min(character, #line)
  end
  local ok, col
  if vim.fn.has('nvim-0.11') == 1 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == 'utf-16')
  end
  return ok and col or #line
end

local function line_text(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

local function mark_pos(bufnr, id)
  local pos = api.nvim_buf_get_extmark_by_id(bufnr, anchors_ns, id, {})
  return pos[1], pos[2]
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

local function cursor_in(bufnr)
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return nil
  end
  local pos = api.nvim_win_get_cursor(win)
  return pos[1] - 1, pos[2]
end

--- What of the item is still to be inserted at the cursor, or nil when the typing left it.
local function remaining(bufnr, item)
  local row, col = cursor_in(bufnr)
  if not row then
    return nil
  end
  local srow, scol = mark_pos(bufnr, item.start_mark)
  if srow ~= row or col < scol then
    return nil
  end
  local typed = line_text(bufnr, row):sub(scol + 1, col)
  if item.text:sub(1, #typed) ~= typed then
    return nil
  end
  local rest = item.text:sub(#typed + 1)
  return rest ~= '' and rest or nil
end

local function hide(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, draw_ns, 0, -1)
  end
end

local function drop_item(bufnr)
  local state = buffers[bufnr]
  hide(bufnr)
  if state and state.item and api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, anchors_ns, 0, -1)
  end
  if state then
    state.item = nil
  end
end

--- Draws the rest of the item after the cursor: the first line inline, the others as virtual lines.
local function show(bufnr)
  local state = buffers[bufnr]
  hide(bufnr)
  if not state or not state.item or not in_insert_mode() then
    return
  end
  local rest = remaining(bufnr, state.item)
  if not rest then
    drop_item(bufnr)
    return
  end
  local row, col = cursor_in(bufnr)
  local lines = vim.split(rest, '\n', { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], 'DiffillGhost' } }
  end
  api.nvim_buf_set_extmark(bufnr, draw_ns, row, col, {
    virt_text = { { lines[1], 'DiffillGhost' } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
end

--- Tells the statusline whether the answer to the current request showed anything.
local function answered(state, shown)
  require('diffill').record_answer(state.client_id, shown)
end

local function on_result(bufnr, tick, err, result)
  local state = buffers[bufnr]
  if not state or err or not api.nvim_buf_is_valid(bufnr) then
    return
  end
  state.request_id = nil
  -- Typed again since the request: the next request's answer will replace this one.
  if api.nvim_buf_get_changedtick(bufnr) ~= tick or not in_insert_mode() then
    return
  end
  local items = result and (result.items or result) or {}
  local first = items[1]
  if not first then
    drop_item(bufnr)
    answered(state, false)
    return
  end
  local text = type(first.insertText) == 'table' and first.insertText.value or first.insertText
  if type(text) ~= 'string' or text == '' then
    drop_item(bufnr)
    answered(state, false)
    return
  end
  local client = vim.lsp.get_client_by_id(state.client_id)
  local encoding = client and client.offset_encoding or 'utf-16'
  local row, col = cursor_in(bufnr)
  if not row then
    return
  end
  local srow, scol, erow, ecol = row, col, row, col
  if first.range then
    local s, e = first.range.start, first.range['end']
    srow, erow = s.line, e.line
    scol = byte_col(line_text(bufnr, srow), s.character, encoding)
    ecol = byte_col(line_text(bufnr, erow), e.character, encoding)
  end
  drop_item(bufnr)
  state.item = {
    text = text,
    start_mark = api.nvim_buf_set_extmark(bufnr, anchors_ns, srow, scol, { right_gravity = false }),
    -- Right gravity: text typed at the end of the range falls inside it.
    end_mark = api.nvim_buf_set_extmark(bufnr, anchors_ns, erow, ecol, { right_gravity = true }),
  }
  show(bufnr)
  answered(state, state.item ~= nil)
end

local function send(bufnr, kind)
  local state = buffers[bufnr]
  if not state or not require('diffill').options.enabled or not in_insert_mode() then
    return
  end
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not client or not cursor_in(bufnr) then
    return
  end
  if state.request_id then
    cancel(client, state.request_id)
    state.request_id = nil
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or AUTOMATIC }
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local ok, id = request(client, 'textDocument/inlineCompletion', params, function(err, result)
    on_result(bufnr, tick, err, result)
  end, bufnr)
  state.request_id = ok and id or nil
end

local function schedule_request(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  show(bufnr) -- keep what still applies while waiting
  if state.timer then
    state.timer:stop()
  else
    state.timer = vim.uv.new_timer()
  end
  state.timer:start(options().debounce_ms, 0, vim.schedule_wrap(function()
    send(bufnr)
  end))
end

--- Stops showing and forgets the item and any pending request.
function M.clear(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  if state.timer then
    state.timer:stop()
  end
  local client = vim.lsp.get_client_by_id(state.client_id)
  if client and state.request_id then
    cancel(client, state.request_id)
  end
  state.request_id = nil
  drop_item(bufnr)
end

--- The part of `rest` a partial accept inserts: its next word (with the blanks before it) or the
--- rest of its current line (at a line end: the line break and the next line).
local function part_of(rest, part)
  if part == 'word' then
    return rest:match('^%s*[%w_]+') or rest:match('^%s*[^%w_%s]+') or rest:match('^%s+') or rest
  end
  if rest:sub(1, 1) == '\n' then
    return '\n' .. (rest:sub(2):match('^[^\n]*') or '')
  end
  return rest:match('^[^\n]+') or rest
end

--- Inserts the rest of the shown item (or `part` of it: 'word', 'line') at the cursor; false when
--- nothing is shown, so the key does what it does without diffill.
function M.accept(bufnr, part)
  local state = buffers[bufnr]
  if not state or not state.item or not remaining(bufnr, state.item) then
    return false
  end
  local item = state.item
  -- Applied after the expr mapping returns (the buffer is locked while it runs).
  vim.schedule(function()
    if state.item ~= item or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    local rest = remaining(bufnr, item)
    if not rest then
      return
    end
    local piece = part and part_of(rest, part) or rest
    if piece == rest then
      part = nil -- the whole rest: the same as a full accept
    end
    local srow, scol = mark_pos(bufnr, item.start_mark)
    local erow, ecol = mark_pos(bufnr, item.end_mark)
    local row, col = cursor_in(bufnr)
    local text = item.text
    if part then
      -- Typed in at the cursor; the rest stays shown, anchored after what was inserted.
      srow, scol, erow, ecol, text = row, col, row, col, piece
    elseif row and (row > erow or (row == erow and col > ecol)) then
      erow, ecol = row, col
    end
    M.clear(bufnr)
    local lines = vim.split(text, '\n', { plain = true })
    api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
    local last_row = srow + #lines - 1
    local last_col = (#lines == 1 and scol or 0) + #lines[#lines]
    api.nvim_win_set_cursor(0, { last_row + 1, last_col })
    if part then
      state.item = {
        text = rest:sub(#piece + 1),
        start_mark = api.nvim_buf_set_extmark(bufnr, anchors_ns, last_row, last_col, { right_gravity = false }),
        end_mark = api.nvim_buf_set_extmark(bufnr, anchors_ns, last_row, last_col, { right_gravity = true }),
      }
      show(bufnr)
    end
  end)
  return true
end

--- Hides the shown item and forgets any pending request; false when nothing was shown.
function M.dismiss(bufnr)
  local state = buffers[bufnr]
  local shown = state ~= nil and state.item ~= nil and remaining(bufnr, state.item) ~= nil
  M.clear(bufnr)
  return shown
end

--- Asks for a suggestion at the cursor now (InlineCompletionTriggerKind.Invoked); false when the
--- buffer has no diffill client.
function M.trigger(bufnr)
  local state = buffers[bufnr]
  if not state then
    return false
  end
  if state.timer then
    state.timer:stop()
  end
  -- After the mapping returns: the mode and cursor are those of the buffer again.
  vim.schedule(function()
    send(bufnr, INVOKED)
  end)
  return true
end

--- The model became ready: a buffer in insert mode with nothing shown asks now.
function M.on_ready(client)
  local bufnr = api.nvim_get_current_buf()
  local state = buffers[bufnr]
  if state and state.client_id == client.id and not state.item and in_insert_mode() then
    schedule_request(bufnr)
  end
end

--- Starts ghost text in a buffer the diffill client attached to.
function M.attach(bufnr, client)
  if buffers[bufnr] then
    buffers[bufnr].client_id = client.id
    return
  end
  local group = api.nvim_create_augroup('diffill.ghost.' .. bufnr, { clear = true })
  buffers[bufnr] = { client_id = client.id, augroup = group }
  api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'TextChangedP', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      schedule_request(bufnr)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd({ 'BufUnload', 'LspDetach' }, {
    group = group,
    buffer = bufnr,
    callback = function(args)
      if args.event == 'LspDetach' and args.data and args.data.client_id ~= client.id then
        return
      end
      M.detach(bufnr)
    end,
  })
  -- Insert mode entered before the client attached: no InsertEnter comes, so ask once now.
  if api.nvim_get_current_buf() == bufnr and in_insert_mode() then
    schedule_request(bufnr)
  end
end

function M.detach(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  M.clear(bufnr)
  if state.timer then
    state.timer:close()
  end
  pcall(api.nvim_del_augroup_by_id, state.augroup)
  buffers[bufnr] = nil
end

--- The text shown after the cursor (nil when none): for tests and statuslines.
function M.shown(bufnr)
  local state = buffers[bufnr or api.nvim_get_current_buf()]
  return state and state.item and remaining(bufnr or api.nvim_get_current_buf(), state.item) or nil
end

return M
