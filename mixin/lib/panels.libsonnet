// Grafana panel builders in grafonnet's style, without grafonnet: each returns one panel whose
// queries use the `$datasource` variable. Every builder takes (title, query or list of queries,
// unit, description), then by name what it styles and its size: w (of the grid's 24 columns)
// and h. The size rides along in the hidden fields `w::` and `h::` (not rendered); `grid` turns
// a list of rows into the dashboard's panels with gridPos and id, so neither is written by hand.
{
  local datasource = { type: 'prometheus', uid: '${datasource}' },

  // One query: `legend` names each series ({{label}} templates).
  query(expr, legend='{{target}} / {{probe}}'):: { datasource: datasource, expr: expr, legendFormat: legend },
  // One instant query whose result is a table (table panels).
  tableQuery(expr):: self.query(expr, '') { format: 'table', instant: true },

  // Threshold steps from `base` (below every step) up: steps('green', [[3600, 'orange']]).
  steps(base, more=[]):: {
    mode: 'absolute',
    steps: [{ color: base, value: null }] + [{ color: s[1], value: s[0] } for s in more],
  },
  // A 0/1 metric shown as text: 0 = `down` in red, 1 = `up` in green.
  boolMap(down, up):: [{
    type: 'value',
    options: {
      '0': { text: down, color: 'red', index: 0 },
      '1': { text: up, color: 'green', index: 1 },
    },
  }],
  // A field override on a column or series name, e.g. a table's 'Value #B'.
  byName(name, unit=null, displayName=null):: {
    matcher: { id: 'byName', options: name },
    properties: (if unit == null then [] else [{ id: 'unit', value: unit }])
                + (if displayName == null then [] else [{ id: 'displayName', value: displayName }]),
  },

  // What every panel shares. `targets` is one query or a list; refIds are A, B, C... in order.
  local panel(type, title, targets, unit, description, w, h, defaults={}, overrides=[], options={}) = {
    type: type,
    title: title,
    description: description,
    datasource: datasource,
    fieldConfig: { defaults: { unit: unit } + defaults, overrides: overrides },
    options: options,
    targets: std.mapWithIndex(
      function(i, t) t { refId: std.char(std.codepoint('A') + i) },
      if std.isArray(targets) then targets else [targets],
    ),
    w:: w,
    h:: h,
  },
  // Only the settings a panel has: an absent mapping or threshold is no field at all.
  local optional(fields) = { [k]: fields[k] for k in std.objectFields(fields) if fields[k] != null },
  local reduceLast = { calcs: ['lastNotNull'], fields: '', values: false },
  local legend(show) = { displayMode: 'list', placement: 'bottom', showLegend: show },

  // One big number per series. `colorMode` 'background' | 'value' | 'none', `graphMode` 'none' |
  // 'area', `textMode` 'auto' | 'value_and_name'; the other options are Grafana's defaults.
  stat(title, targets, unit, description, thresholds=null, mappings=null,
       colorMode='background', graphMode='none', textMode='auto', w=6, h=6)::
    panel('stat', title, targets, unit, description, w, h,
          defaults=optional({ thresholds: thresholds, mappings: mappings }),
          options={
            reduceOptions: reduceLast,
            colorMode: colorMode,
            graphMode: graphMode,
            textMode: textMode,
            orientation: 'auto',
            justifyMode: 'auto',
            wideLayout: true,
            showPercentChange: false,
          }),

  // Lines over time. `sort` orders the tooltip ('none', 'asc', 'desc'); `min`/`max` fix the axis.
  timeseries(title, targets, unit, description, sort='none', min=null, max=null, w=8, h=8)::
    panel('timeseries', title, targets, unit, description, w, h,
          defaults=optional({ min: min, max: max }),
          options={ legend: legend(true), tooltip: { mode: 'multi', sort: sort } }),

  // One colored band per series; colors come from the thresholds, texts from the mappings.
  stateTimeline(title, targets, unit, description, thresholds, mappings=null, w=24, h=6)::
    panel('state-timeline', title, targets, unit, description, w, h,
          defaults={ color: { mode: 'thresholds' }, thresholds: thresholds } + optional({ mappings: mappings }),
          options={
            alignValue: 'left',
            legend: legend(false),
            mergeValues: true,
            rowHeight: 0.9,
            showValue: 'never',
            tooltip: { mode: 'single', sort: 'none' },
          }),

  // Takes tableQuery targets; `transformations` shape the frames, `overrides` name the columns.
  table(title, targets, unit, description, overrides=[], transformations=[], w=24, h=8)::
    panel('table', title, targets, unit, description, w, h, overrides=overrides,
          options={
            cellHeight: 'sm',
            footer: { countRows: false, fields: '', reducer: ['sum'], show: false },
            showHeader: true,
          }) { transformations: transformations },

  // A row: its title bar, then its panels left to right, wrapping at the grid's 24 columns.
  row(title, panels):: { title: title, panels: panels },

  // The dashboard's `panels`: every row's bar and panels with gridPos and id computed. A line
  // is as high as its highest panel; the ids count from 1 in reading order.
  grid(rows)::
    local place(state, p) =
      assert p.w <= 24 : '%s: wider than the grid' % p.title;
      local wrap = state.x + p.w > 24;
      local x = if wrap then 0 else state.x;
      local y = if wrap then state.y + state.lineH else state.y;
      {
        x: x + p.w,
        y: y,
        lineH: std.max(if wrap then 0 else state.lineH, p.h),
        out: state.out + [p { gridPos: { x: x, y: y, w: p.w, h: p.h } }],
      };
    local placeRow(state, r) =
      local top = state.y + state.lineH;
      local bar = { type: 'row', title: r.title, collapsed: false, panels: [], gridPos: { x: 0, y: top, w: 24, h: 1 } };
      std.foldl(place, r.panels, { x: 0, y: top + 1, lineH: 0, out: state.out + [bar] });
    local placed = std.foldl(placeRow, rows, { x: 0, y: 0, lineH: 0, out: [] }).out;
    std.mapWithIndex(function(i, p) p { id: i + 1 }, placed),
}
