"""The Slack bot: `/brief` and `/ask` slash commands and @-mentions over the search index
(`app`), the daily brief posted to a channel exactly once (`post`), and the Block Kit both
are rendered as (`blocks`). Nothing here loads unless Slack is configured.
"""
