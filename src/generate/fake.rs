//! Made-up names and message texts. They exist so that decoders meet the personal data
//! real payloads carry and are tested on dropping it; none of it is meaningful.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Ana",
    "Bruno",
    "Carla",
    "Diego",
    "Eduarda",
    "Felipe",
    "Gabriela",
    "Henrique",
    "Isabela",
    "João",
    "Karina",
    "Lucas",
    "Mariana",
    "Nicolas",
    "Olívia",
    "Pedro",
    "Rafaela",
    "Samuel",
    "Tatiane",
    "Vinícius",
    "Yasmin",
    "Thiago",
    "Letícia",
    "Rodrigo",
    "Beatriz",
    "Gustavo",
    "Camila",
    "André",
    "Juliana",
    "Marcelo",
    "Fernanda",
    "Ricardo",
    "Patrícia",
    "Leonardo",
    "Aline",
    "Caio",
    "Débora",
    "Fábio",
    "Helena",
    "Igor",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Souza",
    "Lima",
    "Oliveira",
    "Santos",
    "Pereira",
    "Costa",
    "Rodrigues",
    "Almeida",
    "Nascimento",
    "Carvalho",
    "Ferreira",
    "Gomes",
    "Martins",
    "Araújo",
    "Ribeiro",
    "Barbosa",
    "Rocha",
    "Dias",
    "Teixeira",
    "Moreira",
    "Cardoso",
    "Mendes",
    "Freitas",
    "Castro",
];

/// ASCII forms of a few first and last names for logins and e-mail addresses.
pub(crate) fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'Á' => 'a',
            'é' | 'ê' | 'É' => 'e',
            'í' | 'Í' => 'i',
            'ó' | 'ô' | 'õ' | 'Ó' => 'o',
            'ú' | 'Ú' => 'u',
            'ç' => 'c',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

pub(crate) const FIRST_MESSAGES: &[&str] = &[
    "Oi, boa tarde",
    "Olá, bom dia!",
    "Preciso de ajuda com minha fatura",
    "Meu pedido ainda não chegou",
    "Quero cancelar meu plano",
    "Boa noite, vocês estão atendendo?",
    "Fui cobrado duas vezes este mês",
    "Não consigo acessar minha conta",
    "Gostaria de saber os preços dos planos",
    "O aplicativo está dando erro ao abrir",
    "Quero trocar a forma de pagamento",
    "Oi",
    "Como faço para emitir a segunda via do boleto?",
    "Minha internet caiu desde ontem",
    "Quero falar com um atendente",
    "Vocês entregam em Campinas?",
];

pub(crate) const BOT_REPLIES_FROM_CUSTOMER: &[&str] = &[
    "1",
    "2",
    "3",
    "Financeiro",
    "Suporte técnico",
    "Vendas",
    "Falar com atendente",
    "Sim",
    "Não",
    "Segunda via",
    "Outro assunto",
];

pub(crate) const THANKS: &[&str] = &[
    "Obrigado!",
    "Valeu",
    "Resolvido, obrigada",
    "Ok, muito obrigado",
    "Perfeito 👍",
];

pub(crate) const CUSTOMER_TALK: &[&str] = &[
    "Ok",
    "O número do pedido é 48213",
    "Já tentei isso e não funcionou",
    "Certo, vou verificar aqui",
    "Pode ser no cartão?",
    "Quanto tempo demora?",
    "Entendi",
    "Ainda está dando o mesmo erro",
    "Segue o comprovante",
    "Isso mesmo",
    "E a multa?",
    "Agora deu certo!",
];

pub(crate) const NUDGES: &[&str] = &[
    "Alguém aí?",
    "Olá??",
    "Ainda estou aguardando",
    "Oi, tem alguém?",
    "Demora muito?",
];

pub(crate) const REOPENS: &[&str] = &[
    "Oi, o problema voltou",
    "Esqueci de perguntar uma coisa",
    "Não recebi o e-mail que vocês falaram",
    "Voltou a cobrar errado",
];

pub(crate) const BOT_GREETINGS: &[&str] = &[
    "Olá! Sou o assistente virtual da Acme. Como posso ajudar?",
    "Oi! Aqui é a assistente da Acme 🤖. Sobre o que você quer falar?",
];

pub(crate) const BOT_MENUS: &[&str] = &[
    "Escolha uma opção: 1 - Financeiro, 2 - Suporte, 3 - Vendas",
    "Você pode me contar um pouco mais sobre o seu problema?",
    "Encontrei estes artigos que podem ajudar. Algum deles resolve?",
];

pub(crate) const BOT_HANDOFFS: &[&str] = &[
    "Vou transferir você para um de nossos atendentes. Aguarde um momento.",
    "Certo! Um atendente vai continuar o seu atendimento em instantes.",
];

pub(crate) const BOT_GOODBYES: &[&str] = &[
    "Que bom que consegui ajudar! Até logo.",
    "Fico feliz em ajudar. Qualquer coisa é só chamar!",
];

pub(crate) const AGENT_FIRST: &[&str] = &[
    "Olá! Meu nome é {agent}, vou te ajudar. Um momento, por favor.",
    "Oi, tudo bem? Aqui é {agent}. Já estou verificando.",
    "Bom dia! {agent} falando. Pode me passar mais detalhes?",
];

pub(crate) const AGENT_TALK: &[&str] = &[
    "Pode me informar o número do pedido?",
    "Verifiquei aqui e o pagamento foi identificado.",
    "Vou abrir uma solicitação para a equipe técnica.",
    "Tente reiniciar o aplicativo, por favor.",
    "Já enviei a segunda via para o seu e-mail.",
    "O prazo é de até 3 dias úteis.",
    "Consegue me enviar um print da tela?",
];

pub(crate) const AGENT_CLOSING: &[&str] = &[
    "Posso ajudar em algo mais?",
    "Obrigado pelo contato! Tenha um ótimo dia.",
    "Qualquer dúvida estamos à disposição.",
];

pub(crate) const AGENT_TRANSFER: &[&str] = &[
    "Vou transferir você para o time responsável, só um instante.",
    "Esse assunto é com outro setor, vou te encaminhar.",
];

pub(crate) const NOTES: &[&str] = &[
    "Cliente já entrou em contato ontem sobre o mesmo assunto.",
    "Verificar estorno com o financeiro.",
    "Possível fraude, acompanhar.",
    "Cliente VIP, priorizar.",
    "Aguardando retorno do time de logística.",
];

pub(crate) const CSAT_FEEDBACK: [&[&str]; 5] = [
    &[
        "Péssimo atendimento",
        "Demorou demais",
        "Não resolveram nada",
    ],
    &["Demorou muito", "Não gostei"],
    &["Ok", "Poderia ser mais rápido", ""],
    &["Bom atendimento", "Resolveu", ""],
    &[
        "Excelente!",
        "Muito rápido, obrigado",
        "Atendente muito educada",
        "",
    ],
];

pub(crate) const DOCUMENT_NAMES: &[&str] = &[
    "boleto.pdf",
    "comprovante.pdf",
    "contrato.pdf",
    "nota_fiscal.pdf",
];

pub(crate) const BUTTON_TITLES: &[(&str, &str)] = &[
    ("opt_billing", "Financeiro"),
    ("opt_support", "Suporte"),
    ("opt_sales", "Vendas"),
    ("opt_agent", "Falar com atendente"),
    ("opt_yes", "Sim"),
    ("opt_no", "Não"),
];

pub(crate) const REACTIONS: &[&str] = &["👍", "❤️", "🙏", "😂", "😮"];

pub(crate) const TAGS: &[&str] = &[
    "refund",
    "invoice",
    "delivery",
    "cancellation",
    "login",
    "bug",
    "upgrade",
    "pricing",
];

pub(crate) const TRANSFER_REASONS: &[&str] = &["wrong_team", "escalation", "specialist"];
