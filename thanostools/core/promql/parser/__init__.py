"""PromQL text to syntax tree and back: lexer, parser, AST, printer, function catalogue."""
